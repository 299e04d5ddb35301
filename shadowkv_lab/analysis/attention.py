"""Attention-level records (cache.record.AttentionRecorder): recall, attention mass and output errors by layer,
prompt position and generated step."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .methods import _present

ATTN_METRICS = ("recall", "mass", "err_selection", "err_approx")

def _bucket(x: pd.Series, bins, lo: float | None = None, hi: float | None = None) -> pd.Series:
    """Equal-width buckets labelled by their centre (so plots get a numeric x axis)."""
    x = pd.to_numeric(x, errors="coerce")
    lo = float(x.min()) if lo is None else lo
    hi = float(x.max()) if hi is None else hi
    if not np.isfinite(lo) or hi <= lo:
        return pd.Series(np.full(len(x), lo), index=x.index)
    edges = np.linspace(lo, hi, int(bins) + 1)
    idx = np.clip(np.searchsorted(edges, x.to_numpy(), side="right") - 1, 0, int(bins) - 1)
    centres = (edges[:-1] + edges[1:]) / 2
    return pd.Series(centres[idx], index=x.index)

def attention_by(records: pd.DataFrame, by: str = "layer", bins: int = 10, metrics=ATTN_METRICS,
                 group=("model", "task", "method")) -> pd.DataFrame:
    """Mean (and standard error) of the attention-level metrics per method along one axis.

    by="layer": per decoder layer; by="position": per bucket of the mean selected prompt position (a share of
    the prompt, 0 = start, 1 = end; tells where the method looks); by="step": per bucket of the generated-token
    index (does the selection degrade as the answer grows?). Averaged over heads, steps and samples.
    Columns: group keys, the axis (layer / position / step), n, <metric>, <metric>_sem.
    """
    if records is None or len(records) == 0:
        return pd.DataFrame(columns=[*group, by, "n", *metrics])
    r = records.copy()
    if by == "layer":
        axis = "layer"
    elif by == "position":
        r["position"] = _bucket(r["mean_selected_position"], bins, 0.0, 1.0)
        axis = "position"
    elif by == "step":
        steps = r["step"].nunique()
        r["step_bucket"] = r["step"] if steps <= bins else _bucket(r["step"], bins)
        axis = "step_bucket"
    else:
        raise ValueError(f"attention_by(by={by!r}): allowed 'layer', 'position', 'step'")
    keys = [*_present(r, group), axis]
    metrics = _present(r, metrics)
    g = r.groupby(keys, sort=True)[metrics]
    out = g.mean()
    sem = g.sem().add_suffix("_sem")
    out = pd.concat([g.size().rename("n"), out, sem], axis=1).reset_index()
    return out.rename(columns={"step_bucket": "step"})

def attention_summary(records: pd.DataFrame, metrics=ATTN_METRICS) -> pd.DataFrame:
    """One row per model x task x method: the attention metrics averaged over everything."""
    if records is None or len(records) == 0:
        return pd.DataFrame()
    keys = _present(records, ("model", "task", "method"))
    return records.groupby(keys, sort=False)[_present(records, metrics)].mean().reset_index()

def attention_vs_score(df: pd.DataFrame, records: pd.DataFrame, baseline: str = "full", metric: str = "score") -> pd.DataFrame:
    """Per sample x method: mean recall / mass / errors next to the score drop against `baseline`.

    Lets a notebook check whether samples with worse selection are the ones that lose points."""
    keys = _present(records, ("model", "task", "sample_id", "method"))
    att = records.groupby(keys)[_present(records, ATTN_METRICS)].mean().reset_index()
    base = df[df["method"] == baseline][["model", "task", "sample_id", metric]].rename(columns={metric: "baseline_score"})
    s = df[["model", "task", "sample_id", "method", metric]].merge(base, on=["model", "task", "sample_id"], how="left")
    s["score_drop"] = s["baseline_score"] - s[metric]
    return att.merge(s, on=keys, how="left")
