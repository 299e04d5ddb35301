"""Analysis of result rows: pure functions of DataFrames written by the runner (no model code here).

One results row = one model x task x sample x method (see shadowkv_lab.results). Attention records = one row per
(sample, method, decode step, layer, KV head) written by cache.record.AttentionRecorder. Everything below takes
those frames and returns smaller frames that the figures in shadowkv_lab.plots and the notebooks consume:

- summary / score_table / paired_delta: mean score with a 95% confidence interval per task x method;
- factorial_attribution: the 2x2 {low-rank, exact keys} x {landmark, oracle selection} error attribution;
- attention_by: recall / attention mass / output errors by layer, prompt position and generated step;
- memory_table / memory_breakdown / accuracy_vs_memory / pareto_front: accuracy against GPU bytes;
- text2json_field_errors: which JSON entity / field a Text2JSON prediction got wrong;
- write_summary: the CSV + Markdown table run_all.sh leaves next to the figures.

    python -m shadowkv_lab.analysis RESULTS_DIR [MORE_DIRS] --out OUT_DIR     # writes OUT_DIR/summary.{csv,md}
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

KEYS = ("model", "task", "method")
ATTN_METRICS = ("recall", "mass", "err_selection", "err_approx")

# Two-sided 95% Student-t quantiles for 1..30 degrees of freedom (scipy is not a dependency).
_T95 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042]

# Tasks where offloading is known to be near-lossless (paper.md claim 1: the "easy" contrast). Everything
# else (text2json, multineedle, longproc, ...) counts as context-intensive.
EASY_TASK_PREFIXES = ("ruler", "niah", "longbench", "vt", "fwe")


def task_group(task: str) -> str:
    """'easy' for RULER/NIAH-style retrieval of one to a few facts, else 'context-intensive'."""
    return "easy" if str(task).lower().startswith(EASY_TASK_PREFIXES) else "context-intensive"


def t95(dof: int) -> float:
    """Two-sided 95% t quantile; the normal 1.96 beyond 30 degrees of freedom is within 2%."""
    if dof < 1:
        return float("nan")
    return _T95[dof - 1] if dof <= len(_T95) else 1.96 + 2.5 / dof  # ~ Cornish-Fisher first term


def mean_ci(values) -> tuple[float, float, int]:
    """(mean, half-width of the 95% CI, n) of the finite values; NaN (invalid gold) is excluded, as in the
    reference evaluation. A single value has an undefined (NaN) interval."""
    x = np.asarray(pd.to_numeric(pd.Series(values), errors="coerce"), dtype=float)
    x = x[np.isfinite(x)]
    n = len(x)
    if n == 0:
        return float("nan"), float("nan"), 0
    if n == 1:
        return float(x[0]), float("nan"), 1
    return float(x.mean()), float(t95(n - 1) * x.std(ddof=1) / math.sqrt(n)), n


def _present(df: pd.DataFrame, cols) -> list[str]:
    return [c for c in cols if c in df.columns]


def method_order(methods) -> list[str]:
    """Methods in the presets' order (full first, then the ShadowKV family, the YAKV family, then the ablation
    presets); rank variants ('shadowkv_r20', 'shadowkv_oracle_scaled') and budget variants ('yakv@0.0625') sort
    with their preset, by budget;
    unknown names last, by name."""
    from .cache.presets import PRESETS

    known = list(PRESETS)

    def key(m):
        base, _, budget = str(m).partition("@")
        mm = re.fullmatch(r"(.+)_(r\d+|scaled)", base)
        if base not in known and mm and mm[1] in known:
            base = mm[1]
        try:
            b = float(budget) if budget else 0.0
        except ValueError:
            b = float(re.sub(r"\D", "", budget) or 0)
        return (known.index(base) if base in known else len(known), base if base not in known else "", b, str(m))

    return sorted(dict.fromkeys(methods), key=key)


# ----------------------------------------------------------------------------------------------- scores
def summary(df: pd.DataFrame, metric: str = "score", by=KEYS) -> pd.DataFrame:
    """Mean +- 95% CI of `metric` per group (default model x task x method), NaN excluded.

    Columns: the group keys, n (finite values), n_nan (excluded rows), mean, ci95 (half-width), lo, hi, std.
    """
    by = _present(df, by)
    rows = []
    for key, g in df.groupby(by, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        m, h, n = mean_ci(g[metric])
        std = float(pd.to_numeric(g[metric], errors="coerce").std(ddof=1)) if n > 1 else float("nan")
        rows.append({**dict(zip(by, key)), "n": n, "n_nan": len(g) - n, "mean": m, "ci95": h, "lo": m - h, "hi": m + h, "std": std})
    out = pd.DataFrame(rows, columns=[*by, "n", "n_nan", "mean", "ci95", "lo", "hi", "std"])
    if "method" in out.columns and len(out):
        order = {m: i for i, m in enumerate(method_order(out["method"]))}
        out = out.sort_values([c for c in by if c != "method"] + ["method"], key=lambda s: s.map(order) if s.name == "method" else s)
    return out.reset_index(drop=True)


def fmt_ci(mean: float, ci: float, digits: int = 1) -> str:
    if not np.isfinite(mean):
        return "n/a"
    return f"{mean:.{digits}f}" if not np.isfinite(ci) else f"{mean:.{digits}f} ± {ci:.{digits}f}"


def score_table(df: pd.DataFrame, metric: str = "score", digits: int = 1) -> pd.DataFrame:
    """Method x task table of 'mean ± ci' strings (one column per task; several models get a model level)."""
    s = summary(df, metric, by=KEYS)
    if s.empty:
        return pd.DataFrame()
    s["cell"] = [fmt_ci(m, h, digits) for m, h in zip(s["mean"], s["ci95"])]
    index = ["model", "method"] if s["model"].nunique() > 1 else ["method"]
    t = s.pivot_table(index=index, columns="task", values="cell", aggfunc="first", sort=False)
    order = method_order(s["method"])
    t = t.reindex(sorted(t.index, key=lambda k: (k[0], order.index(k[1])) if isinstance(k, tuple) else order.index(k)))
    t.columns.name = None
    return t


def paired_delta(df: pd.DataFrame, baseline: str = "full", metric: str = "score") -> pd.DataFrame:
    """Per model x task x method: mean of (method - baseline) over the samples both have, with a paired 95% CI.

    Pairing by sample removes the sample-difficulty variance that dominates with a few samples.
    """
    base = df[df["method"] == baseline][["model", "task", "sample_id", metric]].rename(columns={metric: "_base"})
    m = df[df["method"] != baseline].merge(base, on=["model", "task", "sample_id"], how="inner")
    m["delta"] = pd.to_numeric(m[metric], errors="coerce") - pd.to_numeric(m["_base"], errors="coerce")
    return summary(m, "delta").rename(columns={"mean": "delta"})


# ------------------------------------------------------------------------------------ error attribution
ATTRIBUTION_CELLS = {
    "full": "full",  # F: exact attention
    "lowrank_landmark": "shadowkv",  # S(L, M): low-rank keys, landmark selection
    "exact_landmark": "shadowkv_fullkeys",  # S(E, M): exact keys, landmark selection
    "lowrank_oracle": "shadowkv_oracle",  # S(L, O): low-rank keys, oracle selection
    "exact_oracle": "oracle",  # S(E, O): exact keys, oracle selection
}
ATTRIBUTION_PARTS = ("budget_loss", "key_loss", "landmark_loss", "interaction")


def factorial_attribution(df: pd.DataFrame, metric: str = "score", cells: dict | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split ShadowKV's accuracy loss into key compression, landmark misses, their interaction and the budget.

    A 2x2 factorial design at one sparse budget (our own design; the paper publishes no attribution method):
    keys K in {L: low-rank (rank > 0), E: exact (rank -1)} x selection S in {M: landmarks, O: oracle top-B by
    exact attention}, plus full attention F. With S(K, S) the score of a cell, measured on the same samples:

        total_loss    = F - S(L,M)                           everything ShadowKV loses
        budget_loss   = F - S(E,O)                           irreducible at this budget: even perfect keys and a
                                                             perfect choice of B tokens lose this
        key_loss      = S(E,O) - S(L,O)                      low-rank keys alone (selection already perfect)
        landmark_loss = S(E,O) - S(E,M)                      landmark misses alone (keys already exact)
        interaction   = S(L,O) + S(E,M) - S(E,O) - S(L,M)    what the two together lose beyond the sum of each
                                                             alone (> 0: they compound; < 0: they overlap)

    so total_loss = budget_loss + key_loss + landmark_loss + interaction exactly. The simple effects are measured
    from the ideal corner (E,O) because that is where each factor acts alone. The symmetric (ANOVA-style) main
    effects, averaged over the other factor, are also returned; they sum to S(E,O) - S(L,M) with no interaction:

        key_main      = ((S(E,M) - S(L,M)) + (S(E,O) - S(L,O))) / 2
        landmark_main = ((S(L,O) - S(L,M)) + (S(E,O) - S(E,M))) / 2

    Scores are 0-100 so losses are in score points. Only samples that have a finite score in all five cells
    are used (paired), per model x task. `cells` maps the roles of ATTRIBUTION_CELLS to other method names,
    e.g. budget-swept variants ("shadowkv@0.05", ...).

    Returns (per_sample, means): per_sample has one row per model x task x sample_id with the five cell
    scores and every loss; means has mean and 95% CI (columns <name>, <name>_ci95) per model x task, and n.
    """
    cells = {**ATTRIBUTION_CELLS, **(cells or {})}
    need = list(cells.values())
    d = df[df["method"].isin(need)].copy()
    d[metric] = pd.to_numeric(d[metric], errors="coerce")
    keys = _present(d, ("model", "task", "sample_id"))
    wide = d.pivot_table(index=keys, columns="method", values=metric, aggfunc="mean")
    missing = [m for m in need if m not in wide.columns]
    if missing:
        raise ValueError(f"factorial_attribution needs methods {need}; missing {missing} in the results")
    wide = wide[need].dropna()  # paired: every cell present and finite
    per = pd.DataFrame(index=wide.index)
    for role, meth in cells.items():
        per[role] = wide[meth]
    F, LM, EM, LO, EO = (per[r] for r in ("full", "lowrank_landmark", "exact_landmark", "lowrank_oracle", "exact_oracle"))
    per["total_loss"] = F - LM
    per["budget_loss"] = F - EO
    per["key_loss"] = EO - LO
    per["landmark_loss"] = EO - EM
    per["interaction"] = LO + EM - EO - LM
    per["key_main"] = ((EM - LM) + (EO - LO)) / 2
    per["landmark_main"] = ((LO - LM) + (EO - EM)) / 2
    per = per.reset_index()
    cols = [c for c in per.columns if c not in keys]
    rows = []
    group = [k for k in keys if k != "sample_id"]
    for key, g in per.groupby(group, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        row = {**dict(zip(group, key)), "n": len(g)}
        for c in cols:
            m, h, _ = mean_ci(g[c])
            row[c], row[f"{c}_ci95"] = m, h
        rows.append(row)
    return per, pd.DataFrame(rows)


# ------------------------------------------------------------------------------------ attention records
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


# --------------------------------------------------------------------------------------------- memory
def memory_table(df: pd.DataFrame, by=("model", "method")) -> pd.DataFrame:
    """GPU (device) and offloaded bytes per prompt token per layer, per model x method (median over samples;
    the per-token values barely depend on the prompt except for resident local/outlier tokens).

    device_pct_full: device bytes against full attention's bf16 K+V of the same model (paper.md's table).
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
    full = out[out["method"] == "full"].set_index("model")["device_B_per_token_layer"] if "model" in out else None
    if full is not None and len(full):
        out["device_pct_full"] = 100 * out["device_B_per_token_layer"] / out["model"].map(full)
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


def pareto_front(x, y) -> np.ndarray:
    """Boolean mask of the points on the accuracy-vs-memory frontier: no other point has x <= and y >= with
    one strict (less memory, at least as accurate). NaN points are never on it."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    mask = np.zeros(len(x), bool)
    for i in np.flatnonzero(ok):
        dominated = ok & (x <= x[i]) & (y >= y[i]) & ((x < x[i]) | (y > y[i]))
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


# ----------------------------------------------------------------------------- config-derived columns
def config_field(df: pd.DataFrame, field: str) -> pd.Series:
    """A column of the method's OffloadConfig: the flat column when the runner wrote it, else from `config` JSON."""
    if field in df.columns:
        return df[field]

    def get(c):
        try:
            return (json.loads(c) if isinstance(c, str) else dict(c or {})).get(field)
        except (TypeError, ValueError):
            return None

    return df["config"].map(get) if "config" in df.columns else pd.Series([None] * len(df), index=df.index)


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


# --------------------------------------------------------------------------- Text2JSON field-level errors
ENTITY_STATUSES = ("correct", "wrong_value", "missing_value", "missing_entity", "extra_entity", "unparseable")


def _t2j():
    """The Text2JSON scorer's own parsing and value canonicalisation (tasks.text2json_score), so that field
    statuses agree with the score; a minimal copy of the reference rules when the tasks package is absent."""
    try:
        from .tasks.text2json_score import canonical, extract_strict, parse_gold

        return extract_strict, canonical, parse_gold
    except ImportError:  # pragma: no cover - the tasks package ships with the project
        def canonical(v):
            if v is None:
                return None
            s = v if isinstance(v, str) else str(v) if isinstance(v, (int, float)) else json.dumps(v, sort_keys=True, ensure_ascii=False)
            return s.replace("\u2019", "'")

        def extract_strict(text):
            if text.count("[") != 1 or text.count("]") != 1 or text.index("[") > text.index("]"):
                return None
            try:
                out = json.loads(text[text.index("["): text.index("]") + 1])
            except ValueError:
                return None
            return out if isinstance(out, list) else None

        def parse_gold(g):
            return json.loads(g) if isinstance(g, str) else g

        return extract_strict, canonical, parse_gold


def entity_errors(prediction: str, gold, prompt: str | None = None) -> list[dict]:
    """Field-level comparison of one Text2JSON prediction with its gold list.

    One row per gold (entity, field): status correct / wrong_value / missing_value / missing_entity, and one
    row per extra predicted entity (name not in gold, duplicate, or not an object): extra_entity. An
    unparseable prediction (the reference bracket rule) gives a single 'unparseable' row; an invalid gold
    (duplicate names) gives no rows. Matching and value comparison are the scorer's: by `name`, each gold
    entity consumed once, values through the scorer's canonical string (2001 == "2001"). With `prompt`,
    `position` is where the entity's name first occurs in the prompt (0 = start, 1 = end).
    """
    extract, canonical, parse_gold = _t2j()
    gold = parse_gold(gold)
    if not isinstance(gold, list):
        return []
    pred = extract(prediction) if isinstance(prediction, str) else None
    if pred is None:
        return [{"entity": None, "field": None, "status": "unparseable", "position": np.nan}]
    low = prompt.lower() if prompt else None

    def where(name):
        if not low or not name:
            return np.nan
        i = low.find(name.lower())
        return i / max(len(low), 1) if i >= 0 else np.nan

    gold_by_name = {canonical(g.get("name")): g for g in gold if isinstance(g, dict)}
    remaining = dict(gold_by_name)
    rows, matched = [], {}
    for p in pred:
        name = canonical(p["name"]) if isinstance(p, dict) and isinstance(p.get("name"), str) else None
        if name is None or name not in remaining:
            rows.append({"entity": name, "field": None, "status": "extra_entity", "position": where(name)})
            continue
        matched[name] = p
        del remaining[name]
    for name, g in gold_by_name.items():
        p = matched.get(name)
        for f in (k for k in g if k != "name"):
            if p is None:
                st = "missing_entity"
            elif p.get(f) is None:
                st = "missing_value"
            elif canonical(p.get(f)) != canonical(g.get(f)):
                st = "wrong_value"
            else:
                st = "correct"
            rows.append({"entity": name, "field": f, "status": st, "position": where(name)})
    return rows


def text2json_field_errors(df: pd.DataFrame, gold: dict, prompts: dict | None = None, task: str = "text2json") -> pd.DataFrame:
    """Field-level error rows for every Text2JSON results row: model, task, sample_id, method + entity_errors().

    gold: sample_id -> gold list (from the task's samples, e.g. workbook.samples_by_id); prompts: sample_id ->
    prompt text (optional, for entity positions). Rows without gold are skipped.
    """
    rows = []
    d = df[df["task"] == task] if "task" in df else df
    for _, r in d.iterrows():
        g = gold.get(r["sample_id"])
        if g is None:
            continue
        for e in entity_errors(r.get("prediction", ""), g, (prompts or {}).get(r["sample_id"])):
            rows.append({"model": r.get("model"), "task": r.get("task", task), "sample_id": r["sample_id"], "method": r["method"], **e})
    return pd.DataFrame(rows, columns=["model", "task", "sample_id", "method", "entity", "field", "status", "position"])


def error_counts(errors: pd.DataFrame, by=("method",)) -> pd.DataFrame:
    """Counts and shares of each status per group (rows = group, columns = statuses)."""
    by = list(by)
    c = errors.groupby(by + ["status"], sort=False).size().unstack("status", fill_value=0)
    c = c.reindex(columns=[s for s in ENTITY_STATUSES if s in c.columns])
    if "method" in by and len(by) == 1:
        c = c.reindex(method_order(c.index))
    return c


# ---------------------------------------------------------------------------------------- benchmarks
def _scalars(d: dict, prefix: str = "") -> dict:
    """Scalar fields of a JSON object; nested objects flattened as 'key.sub' (lists dropped)."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_scalars(v, f"{prefix}{k}."))
        elif not isinstance(v, list):
            out[f"{prefix}{k}"] = v
    return out


def load_benchmarks(path="benchmarks/results") -> pd.DataFrame:
    """Rows of every *.json under `path` written by the benchmarks (benchmarks/README.md); empty when absent.

    A file that is a list of objects gives one table named after the file; a file that is an object gives one
    table per list-of-objects field (decode_step.json: 'steps', 'scoring', 'hits', 'zero_copy'; cache_step_*.json:
    'rows') with the object's scalar fields (device, meta.model, ...) copied onto each row. Columns `source`
    (file name) and `table` say where a row came from. Unreadable files are skipped.
    """
    path = Path(path)
    files = sorted(path.glob("*.json")) if path.is_dir() else ([path] if path.is_file() else [])
    rows = []
    for f in files:
        try:
            data = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, list):
            header, tables = {}, {f.stem: data}
        elif isinstance(data, dict):
            header = _scalars(data)
            tables = {k: v for k, v in data.items() if isinstance(v, list) and v and all(isinstance(i, dict) for i in v)}
            tables = tables or {f.stem: [data]}
        else:
            continue
        for name, items in tables.items():
            rows.extend({"source": f.name, "table": name, **header, **_scalars(it)} for it in items if isinstance(it, dict))
    return pd.DataFrame(rows)


def scoring_rows(bench: pd.DataFrame) -> pd.DataFrame:
    """The landmark-scoring rows (landmarks, rule, ns_per_landmark) of the newest benchmark file that has them (by
    its `date` field, else the file name order of load_benchmarks); empty when there are none."""
    need = {"table", "landmarks", "rule", "ns_per_landmark"}
    if bench is None or bench.empty or not need <= set(bench.columns):
        return pd.DataFrame(columns=sorted(need))
    s = bench[(bench["table"] == "scoring") & bench["ns_per_landmark"].notna() & (bench["landmarks"] != "-")]
    if s.empty:
        return s
    order = s.groupby("source")["date"].max().fillna("").sort_values() if "date" in s else None
    newest = order.index[-1] if order is not None else s["source"].iloc[-1]
    return s[s["source"] == newest]


def kernel_agreement(bench: pd.DataFrame) -> pd.DataFrame:
    """The end-to-end check of the Triton decode path against the torch reference (check_kernels_e2e.py,
    kernels_e2e.json): per prompt and method, whether greedy tokens are identical, where they first diverge and the
    reference's own top-2 logit margin there (0: a tie that rounding decides)."""
    cols = ["seed", "prompt_tokens", "method", "identical", "first_divergence", "n_tokens",
            "reference_margin_at_divergence", "max_logit_diff_before", "median_logit_diff_before", "kernels_s", "reference_s"]
    if bench is None or bench.empty or "identical" not in bench:
        return pd.DataFrame(columns=cols)
    k = bench[bench["identical"].notna()]
    return k[[c for c in cols if c in k]].reset_index(drop=True)


# --------------------------------------------------------------------------------------------- writers
def to_markdown(df: pd.DataFrame, digits: int = 2, index: bool = False) -> str:
    """A GitHub Markdown table (no tabulate dependency); floats rounded to `digits`."""
    d = df.reset_index() if index else df

    def cell(v):
        if isinstance(v, float):
            return "" if math.isnan(v) else f"{v:.{digits}f}"
        return str(v).replace("|", "\\|").replace("\n", " ")

    head = "| " + " | ".join(map(str, d.columns)) + " |"
    sep = "| " + " | ".join("---" for _ in d.columns) + " |"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in d.itertuples(index=False)]
    return "\n".join([head, sep, *body]) + "\n"


def results_summary(df: pd.DataFrame, metric: str = "score") -> pd.DataFrame:
    """One row per model x task x method: n, mean score +- CI, paired delta vs full (+- CI), GPU and offloaded
    bytes/token/layer, mean decode tokens/s and the share of generations cut by max_new_tokens."""
    s = summary(df, metric)
    if s.empty:
        return s
    if (df["method"] == "full").any():
        d = paired_delta(df, "full", metric)[["model", "task", "method", "delta", "ci95"]].rename(
            columns={"delta": "delta_vs_full", "ci95": "delta_ci95"})
        s = s.merge(d, on=["model", "task", "method"], how="left")
    mem = memory_table(df)
    if not mem.empty:
        s = s.merge(mem[_present(mem, ("model", "method", "device_B_per_token_layer", "offloaded_B_per_token_layer"))], on=["model", "method"], how="left")
    extra = {}
    if "decode_tok_s" in df:
        extra["decode_tok_s"] = ("decode_tok_s", "mean")
    if "finish_reason" in df:
        df = df.assign(_trunc=(df["finish_reason"] == "length").astype(float))
        extra["truncated_share"] = ("_trunc", "mean")
    if extra:
        s = s.merge(df.groupby(["model", "task", "method"]).agg(**extra).reset_index(), on=["model", "task", "method"], how="left")
    return s.drop(columns=["lo", "hi", "std"])


def write_summary(df: pd.DataFrame, outdir, name: str = "summary", metric: str = "score") -> tuple[Path, Path]:
    """Write results_summary(df) as OUT/name.csv and OUT/name.md (with the method x task score table on top)."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    s = results_summary(df, metric)
    csv = outdir / f"{name}.csv"
    s.to_csv(csv, index=False)
    md = outdir / f"{name}.md"
    parts = [f"# Results summary ({len(df)} rows)\n"]
    if not s.empty:
        parts += ["## Score (mean ± 95% CI, 0-100)\n", to_markdown(score_table(df, metric), index=True), "\n## Details\n", to_markdown(s)]
    md.write_text("\n".join(parts))
    return csv, md


def load_stores(paths) -> pd.DataFrame:
    """Rows of several results stores, a cell (model, task, sample_id, config_hash) kept once (first store wins)."""
    from . import results

    frames = [f for f in (results.load(p) for p in paths) if len(f)]
    if not frames:
        return results.load(paths[0]) if paths else pd.DataFrame()
    df = pd.concat(frames, ignore_index=True)
    return df.drop_duplicates(["model", "task", "sample_id", "config_hash"], keep="first").reset_index(drop=True)


def main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m shadowkv_lab.analysis", description="Write summary.{csv,md} of results stores.")
    p.add_argument("results", nargs="+", help="results store folder(s) (shadowkv_lab.results); a cell in several is counted once")
    p.add_argument("-o", "--out", default="outputs", help="output folder (default: outputs)")
    p.add_argument("--name", default="summary")
    a = p.parse_args(argv)
    df = load_stores(a.results)
    csv, md = write_summary(df, a.out, a.name)
    print(md.read_text())
    print(f"wrote {csv} and {md}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
