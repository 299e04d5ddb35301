"""Memory accounting of results rows: bytes per prompt token per layer, by category, against accuracy."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd

from .methods import _present, config_field, method_order
from .stats import summary

def memory_table(df: pd.DataFrame, by=("model", "method")) -> pd.DataFrame:
    """GPU (device) and offloaded bytes per prompt token per layer, per model x method (median over samples;
    the per-token values barely depend on the prompt except for resident local/outlier tokens).

    device_pct_full: device bytes against full attention's bf16 K+V of the same model (docs/paper.md's memory table).
    """
    by = _present(df, by)
    cols = {"device_B_per_token_layer": "mem_device_bytes_per_token_layer",
            "offloaded_B_per_token_layer": "mem_offloaded_bytes_per_token_layer"}
    if "mem_device_bytes_per_token_layer" not in df or "method" not in df:
        return pd.DataFrame(columns=[*by, *cols])
    d = df[pd.to_numeric(df["mem_device_bytes_per_token_layer"], errors="coerce").notna()]
    agg = {k: (v, "median") for k, v in cols.items() if v in d}
    if "prompt_tokens" in d:
        agg["prompt_tokens"] = ("prompt_tokens", "median")
    out = d.groupby(by, sort=False).agg(**agg, n=("method", "size")).reset_index()
    if out.empty:
        return out
    ref = [c for c in by if c != "method"]  # full attention of the same model (and task, when grouped by task)
    full = out[out["method"] == "full"]
    if ref and len(full):
        base = out[ref].merge(full[ref + ["device_B_per_token_layer"]], on=ref, how="left")["device_B_per_token_layer"]
        out["device_pct_full"] = 100 * out["device_B_per_token_layer"] / base.to_numpy()
    order = {m: i for i, m in enumerate(method_order(out["method"]))}
    return out.sort_values([c for c in by if c != "method"] + ["method"], key=lambda s: s.map(order) if s.name == "method" else s).reset_index(drop=True)

_MEM_COL = re.compile(r"^mem_(device|offloaded|analysis):(.+)$")

_PER_TOKEN_EXCLUDED = ("generated", "step_buffer")  # MemoryReport.per_token_per_layer leaves these out

def memory_breakdown(df: pd.DataFrame, by=("model", "method")) -> pd.DataFrame:
    """Long table of bytes per prompt token per layer by storage category (landmarks, lowrank_U, keys, values,
    local, outliers, ...) and role (device / offloaded), per model x method (median over samples).

    Category bytes are totals over layers; they are turned into per-token-per-layer numbers with the row's own
    ratio mem_<role>_bytes_per_token_layer / (sum of that role's prompt-proportional categories), which is
    exact because both come from the same MemoryReport.
    """
    cols = [c for c in df.columns if _MEM_COL.match(c)]
    by = _present(df, by)
    rows = []
    for _, r in df.iterrows():
        for role in ("device", "offloaded"):
            role_cols = [c for c in cols if c.startswith(f"mem_{role}:")]
            base = sum(float(r[c]) for c in role_cols if pd.notna(r[c]) and c.split(":", 1)[1] not in _PER_TOKEN_EXCLUDED)
            per = r.get(f"mem_{role}_bytes_per_token_layer")
            scale = float(per) / base if base > 0 and per is not None and pd.notna(per) else float("nan")
            for c in role_cols:
                cat = c.split(":", 1)[1]
                if cat in _PER_TOKEN_EXCLUDED or pd.isna(r[c]):
                    continue
                rows.append({**{k: r[k] for k in by}, "role": role, "category": cat, "B_per_token_layer": float(r[c]) * scale})
    if not rows:
        return pd.DataFrame(columns=[*by, "role", "category", "B_per_token_layer"])
    out = pd.DataFrame(rows)
    return out.groupby([*by, "role", "category"], sort=False)["B_per_token_layer"].median().reset_index()

# Memory within this share counts as equal on the frontier: the same layout plus a per-channel constant (YAKV's key
# offset holds 0.08% more bytes than plain YAKV at 29k) must not put a method that scores 0 on the frontier.
FRONT_MEMORY_RTOL = 0.01


def pareto_front(x, y, rtol: float = FRONT_MEMORY_RTOL) -> np.ndarray:
    """Boolean mask of the points on the accuracy-vs-memory frontier: no other point holds less memory and is at
    least as accurate, or holds at most rtol more memory and is more accurate. NaN points are never on it."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    mask = np.zeros(len(x), bool)
    for i in np.flatnonzero(ok):
        dominated = ok & (x <= x[i] * (1 + rtol)) & (y >= y[i]) & ((x < x[i]) | (y > y[i]))
        mask[i] = not dominated.any()
    return mask

def accuracy_vs_memory(df: pd.DataFrame, metric: str = "score", per_task: bool = True) -> pd.DataFrame:
    """Per model (x task) x method: mean score +- CI against GPU bytes/token/layer, with the Pareto frontier
    flagged (`on_front`) within each model (x task). per_task=False averages tasks per sample first."""
    d = df.copy()
    if not per_task:
        d = d.assign(task="all tasks")
    s = summary(d, metric, by=("model", "task", "method"))
    mem = memory_table(df)
    if mem.empty:
        s["device_B_per_token_layer"] = np.nan
        s["offloaded_B_per_token_layer"] = np.nan
    else:
        s = s.merge(mem[_present(mem, ("model", "method", "device_B_per_token_layer", "offloaded_B_per_token_layer", "device_pct_full"))],
                    on=["model", "method"], how="left")
    s["on_front"] = False
    for _, idx in s.groupby(["model", "task"]).groups.items():
        s.loc[idx, "on_front"] = pareto_front(s.loc[idx, "device_B_per_token_layer"], s.loc[idx, "mean"])
    return s


def closed_form_vs_measured(df: pd.DataFrame, n_kv_heads: int, head_dim: int) -> pd.DataFrame:
    """Per method: the measured GPU bytes/token/layer (the cache's MemoryReport, median over rows) beside the closed
    form of cache.memory.analytic_bytes_per_token at the rows' median prompt length, and the difference as named
    rows of the measurement the closed form leaves out (candidate_ids: the selected-token ids kept per head, which
    the closed form does not count) plus what is left ('unexplained', ~0 when the two agree).

    Columns: method, measured, closed_form, candidate_ids, unexplained (bytes/token/layer)."""
    from ..cache.config import OffloadConfig
    from ..cache.memory import analytic_bytes_per_token

    cols = ["method", "measured", "closed_form", "candidate_ids", "unexplained"]
    mem = memory_table(df)
    if mem.empty or "config" not in df:
        return pd.DataFrame(columns=cols)
    cats = memory_breakdown(df)
    cats = cats[cats["role"] == "device"] if len(cats) else cats
    rows = []
    for r in mem.itertuples():
        cfg = df.loc[df["method"] == r.method, "config"].iloc[0]
        cfg = OffloadConfig.from_dict(json.loads(cfg)) if isinstance(cfg, str) else OffloadConfig.from_dict(cfg)
        L = int(getattr(r, "prompt_tokens", 0) or 0) or 1
        closed = analytic_bytes_per_token(cfg, n_kv_heads=n_kv_heads, head_dim=head_dim, prompt_len=L)["device"]
        c = cats[(cats["method"] == r.method) & (cats["category"] == "candidate_ids")]["B_per_token_layer"] if len(cats) else []
        cand = float(c.sum()) if len(c) else 0.0
        rows.append({"method": r.method, "measured": r.device_B_per_token_layer, "closed_form": closed, "candidate_ids": cand,
                     "unexplained": r.device_B_per_token_layer - closed - cand})
    return pd.DataFrame(rows, columns=cols)


def landmark_bytes(df: pd.DataFrame, reference: str = "higgs-4-256") -> pd.DataFrame:
    """Landmark bytes per token per layer per method (measured: packed codes + scales), its landmark format, and the
    change in percent against the method whose landmarks use `reference` (2-bit HIGGS; NaN without one)."""
    mem = memory_breakdown(df)
    cols = ["method", "landmark_format", "landmark_B_per_token_layer", "vs_reference_pct"]
    if mem.empty:
        return pd.DataFrame(columns=cols)
    lm = mem[(mem["category"] == "landmarks") & (mem["role"] == "device")].groupby("method", sort=False)["B_per_token_layer"].median()
    first = df.drop_duplicates("method")
    fmt = dict(zip(first["method"], config_field(first, "landmark_format")))
    out = pd.DataFrame({"method": lm.index, "landmark_format": [fmt.get(m) for m in lm.index], "landmark_B_per_token_layer": lm.values})
    ref = out.loc[out["landmark_format"] == reference, "landmark_B_per_token_layer"]
    out["vs_reference_pct"] = 100 * (out["landmark_B_per_token_layer"] / ref.iloc[0] - 1) if len(ref) else np.nan
    return out[cols]
