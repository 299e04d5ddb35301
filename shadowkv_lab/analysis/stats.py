"""Score statistics that stay honest at small n.

Below MIN_N_CI samples per cell no confidence interval is given anywhere (a t interval on 2-4 samples spans most of
the 0-100 range and says nothing): tables show the per-sample values and the win / tie / loss record against full
attention instead, and a run with such cells is a smoke test (`smoke_note`). From MIN_N_CI samples on, the
interval is Student's t (95%), with its ends clipped to the metric's range (METRIC_RANGE).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .methods import KEYS, _present, method_order

MIN_N_CI = 5  # fewer finite values than this: no confidence interval
# Bounds of the metrics the workbook reports (interval ends are clipped to them); other metrics are unbounded.
METRIC_RANGE = {"score": (0.0, 100.0), "delta": (-100.0, 100.0), "depth_score": (0.0, 100.0)}

# Two-sided 95% Student-t quantiles for 1..30 degrees of freedom (scipy is not a dependency).
_T95 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042]


def t95(dof: int) -> float:
    """Two-sided 95% t quantile; the normal 1.96 beyond 30 degrees of freedom is within 2%."""
    if dof < 1:
        return float("nan")
    return _T95[dof - 1] if dof <= len(_T95) else 1.96 + 2.5 / dof  # ~ Cornish-Fisher first term


def finite(values) -> np.ndarray:
    """The finite values as floats (NaN, i.e. an invalid gold, is excluded as in the reference evaluation)."""
    x = np.asarray(pd.to_numeric(pd.Series(values), errors="coerce"), dtype=float)
    return x[np.isfinite(x)]


def mean_ci(values, min_n: int = MIN_N_CI) -> tuple[float, float, int]:
    """(mean, half-width of the 95% t interval, n) of the finite values. The half-width is NaN below `min_n`
    values: with fewer samples report the values themselves (`per_sample`, `win_tie_loss`)."""
    x = finite(values)
    n = len(x)
    if n == 0:
        return float("nan"), float("nan"), 0
    if n < max(min_n, 2):
        return float(x.mean()), float("nan"), n
    return float(x.mean()), float(t95(n - 1) * x.std(ddof=1) / math.sqrt(n)), n


def is_smoke(n) -> bool:
    """True when a cell has fewer samples than MIN_N_CI (n: one count or several)."""
    n = np.atleast_1d(np.asarray(n, dtype=float))
    return bool(len(n) == 0 or np.nanmin(n) < MIN_N_CI)


def smoke_note(n) -> str:
    """One line that labels a table or a figure: a smoke test below MIN_N_CI samples per cell, else the interval used."""
    n = np.atleast_1d(np.asarray(n, dtype=float))
    finite = len(n) and np.isfinite(n).any()
    lo, hi = (int(np.nanmin(n)), int(np.nanmax(n))) if finite else (0, 0)
    if hi < MIN_N_CI:
        return (f"Smoke test: n = {lo} sample{'s' * (lo != 1)} per cell (< {MIN_N_CI}); no confidence intervals, "
                "per-sample values and win/tie/loss against full attention instead.")
    if lo < MIN_N_CI:  # a grid that ran in full beside a few partly run cells is not a smoke test
        return (f"n = {lo} to {hi} samples per cell: 95% Student-t intervals clipped to the metric's range from "
                f"{MIN_N_CI} samples on; below that, per-sample values and no interval.")
    return f"n >= {lo} samples per cell; 95% Student-t intervals clipped to the metric's range."


def summary(df: pd.DataFrame, metric: str = "score", by=KEYS) -> pd.DataFrame:
    """Mean of `metric` per group (default model x task x method), NaN excluded, with a 95% t interval from
    MIN_N_CI values on (NaN below).

    Columns: the group keys, n (finite values), n_nan (excluded rows), mean, ci95 (half-width), lo, hi (the
    interval clipped to METRIC_RANGE[metric] when the metric is bounded), std, values (the finite values, in the
    rows' order, to 2 decimals).
    """
    by = _present(df, by)
    lo_b, hi_b = METRIC_RANGE.get(metric, (-np.inf, np.inf))
    rows = []
    for key, g in df.groupby(by, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        x = finite(g[metric])
        m, h, n = mean_ci(x)
        std = float(x.std(ddof=1)) if n > 1 else float("nan")
        rows.append({**dict(zip(by, key)), "n": n, "n_nan": len(g) - n, "mean": m, "ci95": h, "lo": max(m - h, lo_b),
                     "hi": min(m + h, hi_b), "std": std, "values": tuple(round(float(v), 2) for v in x)})
    out = pd.DataFrame(rows, columns=[*by, "n", "n_nan", "mean", "ci95", "lo", "hi", "std", "values"])
    if "method" in out.columns and len(out):
        order = {m: i for i, m in enumerate(method_order(out["method"]))}
        out = out.sort_values([c for c in by if c != "method"] + ["method"], key=lambda s: s.map(order) if s.name == "method" else s)
    return out.reset_index(drop=True)


def fmt_ci(mean: float, ci: float, digits: int = 1, values=None) -> str:
    """'54.5 ± 3.2' with an interval; without one (small n), the mean and the per-sample values: '54.5 (40.0, 69.0)'."""
    if not np.isfinite(mean):
        return "n/a"
    if np.isfinite(ci):
        return f"{mean:.{digits}f} ± {ci:.{digits}f}"
    if values is not None and len(values) > 1:
        return f"{mean:.{digits}f} (" + ", ".join(f"{v:.{digits}f}" for v in values) + ")"
    return f"{mean:.{digits}f}"


def score_table(df: pd.DataFrame, metric: str = "score", digits: int = 1) -> pd.DataFrame:
    """Method x task table: 'mean ± ci' from MIN_N_CI samples on, 'mean (per-sample values)' below (one column per
    task; several models get a model level)."""
    s = summary(df, metric, by=KEYS)
    if s.empty:
        return pd.DataFrame()
    s["cell"] = [fmt_ci(m, h, digits, v) for m, h, v in zip(s["mean"], s["ci95"], s["values"])]
    index = ["model", "method"] if s["model"].nunique() > 1 else ["method"]
    t = s.pivot_table(index=index, columns="task", values="cell", aggfunc="first", sort=False)
    order = method_order(s["method"])
    t = t.reindex(sorted(t.index, key=lambda k: (k[0], order.index(k[1])) if isinstance(k, tuple) else order.index(k)))
    t.columns.name = None
    return t


def _paired(df: pd.DataFrame, baseline: str, metric: str) -> pd.DataFrame:
    """Rows of the other methods with `delta` = method - baseline on the same model x task x sample."""
    base = df[df["method"] == baseline][["model", "task", "sample_id", metric]].rename(columns={metric: "_base"})
    m = df[df["method"] != baseline].merge(base, on=["model", "task", "sample_id"], how="inner")
    m["delta"] = pd.to_numeric(m[metric], errors="coerce") - pd.to_numeric(m["_base"], errors="coerce")
    return m


def win_tie_loss(df: pd.DataFrame, baseline: str = "full", metric: str = "score", tol: float = 0.0) -> pd.DataFrame:
    """Per model x task x method: on how many samples the method beats (win), matches within `tol` (tie) or trails
    (loss) `baseline`. The comparison that still means something at n = 2."""
    m = _paired(df, baseline, metric).dropna(subset=["delta"])
    cols = ["model", "task", "method", "n", "wins", "ties", "losses", "record"]
    if m.empty:
        return pd.DataFrame(columns=cols)
    m = m.assign(wins=m["delta"] > tol, ties=m["delta"].abs() <= tol, losses=m["delta"] < -tol)
    out = m.groupby(["model", "task", "method"], sort=False)[["wins", "ties", "losses"]].sum().astype(int).reset_index()
    out["n"] = out[["wins", "ties", "losses"]].sum(axis=1)
    out["record"] = [f"{w}-{t}-{lo}" for w, t, lo in zip(out["wins"], out["ties"], out["losses"])]
    return out[cols]


def paired_delta(df: pd.DataFrame, baseline: str = "full", metric: str = "score") -> pd.DataFrame:
    """Per model x task x method: mean of (method - baseline) over the samples both have, the paired 95% interval
    from MIN_N_CI pairs on, the per-sample deltas (`values`) and the win / tie / loss record against the baseline."""
    s = summary(_paired(df, baseline, metric), "delta").rename(columns={"mean": "delta"})
    wtl = win_tie_loss(df, baseline, metric)
    return s.merge(wtl.drop(columns=["n"]), on=["model", "task", "method"], how="left")


def per_sample(df: pd.DataFrame, metric: str = "score") -> pd.DataFrame:
    """Sample x method table of `metric` (one row per model x task x sample): what to read when n is small."""
    keys = _present(df, ("model", "task", "sample_id"))
    t = df.assign(**{metric: pd.to_numeric(df[metric], errors="coerce")}).pivot_table(
        index=keys, columns="method", values=metric, aggfunc="mean")
    t = t[method_order(t.columns)]
    t.columns.name = None
    return t
