"""Scores along one config axis (rank, chunk size, landmark bits, budget) and MultiNeedle's per-depth scores."""

from __future__ import annotations

import pandas as pd

from .methods import _present, config_field
from .stats import summary

def sweep(df: pd.DataFrame, x: str, metric: str = "score", methods=None) -> pd.DataFrame:
    """Mean +- CI of `metric` per model x task x method together with one config column `x` (e.g. rank,
    chunk_size, landmark_bits, budget_tokens), for the ablation figures."""
    d = df if methods is None else df[df["method"].isin(list(methods))]
    col = config_field(d, x)
    if "kind" in d:  # full attention has no landmarks / budget: its config defaults would be plotted as a sweep point
        col = col.where(d["kind"] != "full")
    d = d.assign(**{x: col})
    s = summary(d, metric)
    xs = d.groupby(["model", "task", "method"], sort=False)[x].agg(lambda v: v.dropna().median() if pd.api.types.is_numeric_dtype(v) else v.iloc[0])
    return s.merge(xs.reset_index(), on=["model", "task", "method"], how="left")

def depth_scores(df: pd.DataFrame, prefix: str = "metric_depth_") -> pd.DataFrame:
    """MultiNeedle per-depth scores in long form (model, task, method, depth, mean, ci95): which needle depths
    (position in the prompt, percent) a method loses."""
    cols = [c for c in df.columns if c.startswith(prefix)]
    if not cols:
        return pd.DataFrame(columns=["model", "task", "method", "depth", "n", "mean", "ci95"])
    long = df.melt(id_vars=_present(df, ("model", "task", "sample_id", "method")), value_vars=cols, var_name="depth", value_name="depth_score")
    long["depth"] = long["depth"].str[len(prefix):].astype(float)
    long = long.dropna(subset=["depth_score"])
    return summary(long, "depth_score", by=("model", "task", "method", "depth"))
