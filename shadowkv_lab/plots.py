"""Figures: one function per figure, each takes a DataFrame (results rows, or an analysis table) and returns a
matplotlib Figure. `save(fig, name)` writes PDF + PNG with TrueType (Type 42) fonts embedded.

Conventions: scores are 0-100 with 95% CI error bars; memory is bytes per prompt token per layer; a method keeps
the same colour in every figure (Okabe-Ito colour-blind-safe palette, fixed for the named presets, hashed for
others); sweeps (rank, bits, chunk size, budget) draw one line per task, with full attention as a dashed line.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402,F401
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from . import analysis as A  # noqa: E402
from .cache.presets import SCALED_RANK_SHARE  # noqa: E402

# Type 42 (TrueType) fonts in PDF/PS: editable text and accepted by publishers (Type 3 is not).
RC = {
    "pdf.fonttype": 42, "ps.fonttype": 42, "savefig.bbox": "tight", "savefig.dpi": 200, "figure.dpi": 100,
    "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3,
    "font.size": 10, "axes.titlesize": 10, "axes.labelsize": 10, "legend.fontsize": 8, "legend.frameon": False,
    "figure.constrained_layout.use": True,  # suptitles, outside legends and long tick labels never overlap
}
matplotlib.rcParams.update(RC)

# Okabe & Ito (2008) palette: distinguishable with every common colour-vision deficiency.
OKABE_ITO = {"black": "#000000", "orange": "#E69F00", "sky": "#56B4E9", "green": "#009E73", "yellow": "#F0E442",
             "blue": "#0072B2", "vermillion": "#D55E00", "purple": "#CC79A7", "grey": "#999999"}
METHOD_COLORS = {
    "full": OKABE_ITO["black"],
    "shadowkv": OKABE_ITO["vermillion"],
    "shadowkv_fullkeys": OKABE_ITO["orange"],
    "shadowkv_oracle": OKABE_ITO["purple"],
    "oracle": OKABE_ITO["grey"],
    "shadowkv_serving": OKABE_ITO["yellow"],
    "yakv": OKABE_ITO["blue"],
    "yakv_residual": OKABE_ITO["sky"],
    "yakv_exactkv": OKABE_ITO["green"],
}
# Other methods (ablation configs) hash into this longer colour-blind-friendly list (Paul Tol's "muted").
EXTRA_COLORS = ["#332288", "#88CCEE", "#44AA99", "#117733", "#999933", "#DDCC77", "#CC6677", "#882255", "#AA4499", "#DDDDDD"]
TASK_COLORS = [OKABE_ITO[k] for k in ("blue", "vermillion", "green", "purple", "orange", "sky", "yellow", "grey")]
MARKERS = "osD^vP*Xh<>"

METHOD_LABELS = {
    "full": "Full attention",
    "shadowkv": "ShadowKV",
    "shadowkv_fullkeys": "ShadowKV, exact keys",
    "shadowkv_oracle": "ShadowKV keys, oracle selection",
    "oracle": "Exact keys, oracle selection",
    "shadowkv_serving": "ShadowKV (mean-dot scoring)",
    "yakv": "YAKV",
    "yakv_residual": "YAKV, residual landmarks",
    "yakv_exactkv": "YAKV landmarks, exact K/V",
}
TASK_LABELS = {"text2json": "Text2JSON", "multineedle": "MultiNeedle", "longproc": "LongProc HTML→TSV",
               "longproc_html_to_tsv": "LongProc HTML→TSV", "html_to_tsv": "LongProc HTML→TSV"}
ATTN_LABELS = {"recall": "recall of oracle top-B", "mass": "attention mass covered", "err_selection": "output error: selection",
               "err_approx": "output error: approximation"}
PART_COLORS = {"budget_loss": OKABE_ITO["grey"], "key_loss": OKABE_ITO["vermillion"], "landmark_loss": OKABE_ITO["blue"],
               "interaction": OKABE_ITO["purple"]}
PART_LABELS = {"budget_loss": "budget (oracle vs full)", "key_loss": "low-rank keys", "landmark_loss": "landmark misses",
               "interaction": "interaction"}
SCORE_LABEL = "score (0-100)"
MEM_LABEL = "GPU bytes / token / layer"


def _base_method(method: str) -> tuple[str, str | None, str | None]:
    """'shadowkv_r20@0.05' -> ('shadowkv', '20', '0.05'): preset family, scaled rank, budget tag."""
    m = str(method)
    base, _, budget = m.partition("@")
    mm = re.fullmatch(r"(.+)_(r\d+|scaled)", base)
    if mm and mm[1] in METHOD_COLORS:
        return mm[1], (mm[2][1:] if mm[2] != "scaled" else "scaled"), budget or None
    return base, None, budget or None


def method_color(method: str) -> str:
    """Fixed colour for a preset (also its rank-scaled / budget variants), else a stable hash of the name, so a
    method has the same colour in every figure and notebook."""
    base, _, _ = _base_method(method)
    if base in METHOD_COLORS:
        return METHOD_COLORS[base]
    h = int(hashlib.md5(str(method).encode()).hexdigest(), 16)
    return EXTRA_COLORS[h % len(EXTRA_COLORS)]


def method_label(method: str) -> str:
    """Readable name: presets by name; ablation builders' names (lm_*, chunk*, keys_*, _r<rank>, @budget) decoded."""
    base, rank, budget = _base_method(method)
    if budget is not None:
        b = f"{float(budget) * 100:g}% budget" if re.fullmatch(r"[0-9.]+(e-?\d+)?", budget) else budget.replace("t", " tokens")
        return f"{method_label(str(method).split('@')[0])} @ {b}"
    if rank == "scaled":
        return f"{METHOD_LABELS.get(base, base)} (rank {100 * SCALED_RANK_SHARE:.3g}% of H·d)"
    if rank is not None:
        return f"{METHOD_LABELS.get(base, base)} (rank {rank})"
    m = base
    if m in METHOD_LABELS:
        return METHOD_LABELS[m]
    if mm := re.fullmatch(r"lm_(\w+?)_c(\d+)", m):
        return f"landmarks {mm[1]}, chunk {mm[2]}"
    if mm := re.fullmatch(r"chunk(\d+)", m):
        return f"chunk size {mm[1]}"
    if mm := re.fullmatch(r"keys_rank(\d+)", m):
        return f"rank-{mm[1]} keys"
    if mm := re.fullmatch(r"keys_(\w+)", m):
        return f"{mm[1]} keys"
    return m


def task_label(task: str) -> str:
    t = str(task)
    return TASK_LABELS.get(t, t.replace("_", " "))


def task_colors(tasks) -> dict:
    return {t: TASK_COLORS[i % len(TASK_COLORS)] for i, t in enumerate(dict.fromkeys(tasks))}


def save(fig, name: str, outdir="figures", formats=("pdf", "png")) -> list[Path]:
    """Write `fig` as outdir/name.pdf and outdir/name.png (fonts embedded as Type 42); returns the paths."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    paths = []
    with matplotlib.rc_context(RC):
        for fmt in formats:
            p = outdir / f"{name}.{fmt}"
            fig.savefig(p, format=fmt)
            paths.append(p)
    return paths


def _empty(message: str, figsize=(6, 2.5)):
    """A figure that says why it has no data (notebooks show it instead of failing)."""
    fig, ax = plt.subplots(figsize=figsize)
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True, fontsize=10)
    return fig


def _panels(n: int, width: float = 3.6, height: float = 3.0, sharey=True):
    fig, axes = plt.subplots(1, max(n, 1), figsize=(width * max(n, 1), height), sharey=sharey, squeeze=False)
    return fig, axes[0]


def _full_line(ax, s_full: pd.DataFrame, task, color, label=True):
    """Dashed horizontal line at full attention's mean score for `task` (the accuracy ceiling)."""
    v = s_full[s_full["task"] == task]["mean"]
    if len(v) and np.isfinite(v.iloc[0]):
        ax.axhline(v.iloc[0], color=color, ls="--", lw=1, alpha=0.8, label=f"{task_label(task)}: full" if label else None)


def _model_title(df: pd.DataFrame) -> str:
    models = list(dict.fromkeys(df["model"])) if "model" in df else []
    return ", ".join(map(str, models))


def _yerr(mean, ci, lo: float = 0.0, hi: float = 100.0):
    """Asymmetric error bars of a 95% CI clipped to the score range (with 2-3 samples a t interval easily spans
    more than 0-100; beyond the range it carries no information and hides the bars)."""
    m = np.asarray(mean, float)
    c = np.nan_to_num(np.asarray(ci, float), nan=0.0)
    return np.vstack([np.clip(np.minimum(c, m - lo), 0, None), np.clip(np.minimum(c, hi - m), 0, None)])


def _legend_right(ax, max_right: int = 12):
    """Legend outside the axes on the right, duplicate labels dropped; a long one (many methods) goes below the
    figure in three columns instead, so the axes keep their width."""
    h, l = ax.get_legend_handles_labels()
    uniq = dict(zip(l, h))
    if not uniq:
        return
    if len(uniq) <= max_right:
        ax.legend(uniq.values(), uniq.keys(), loc="upper left", bbox_to_anchor=(1.01, 1.0))
    else:
        ax.figure.legend(uniq.values(), uniq.keys(), loc="outside lower center", ncol=3, fontsize=7)


def _legend_rows(n: int, max_right: int = 12) -> float:
    """Extra figure height (inches) a legend of n entries needs (below the axes when long)."""
    return 0.0 if n <= max_right else 0.16 * -(-n // 3) + 0.3


def _plain_log_ticks(axis):
    """Log axis with plain numbers (64, 128, 1024) instead of 2x10^2."""
    axis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(matplotlib.ticker.NullFormatter())


def method_marker(method: str) -> str:
    """Marker by method family, so ablation variants that share a hashed colour stay distinguishable."""
    m = str(method)
    for prefix, mk in (("lm_", "s"), ("chunk", "^"), ("keys_", "D"), ("yakv", "o"), ("shadowkv", "o"), ("oracle", "P"), ("full", "*")):
        if m.startswith(prefix):
            return mk if "@" not in m else "v"
    return "o"


# -------------------------------------------------------------------------------------------- figures
def accuracy_by_task(df: pd.DataFrame, metric: str = "score", methods=None, tasks=None, title: str | None = None,
                     show_samples: bool | None = None):
    """Grouped bars: mean score +- 95% CI (clipped to 0-100) per task and method, context-intensive tasks left,
    easy (RULER-style) tasks right (paper.md claim 1). show_samples (default: when <= 10 samples per bar) adds
    each sample's score as a dot."""
    d = df if methods is None else df[df["method"].isin(methods)]
    s = A.summary(d, metric)
    if s.empty:
        return _empty("no results to plot")
    tasks = list(dict.fromkeys(tasks or s["task"]))
    methods = list(methods) if methods is not None else A.method_order(s["method"])
    if show_samples is None:
        show_samples = s["n"].max() <= 10
    groups = {g: [t for t in tasks if A.task_group(t) == g] for g in ("context-intensive", "easy")}
    groups = {g: ts for g, ts in groups.items() if ts}
    fig, axes = plt.subplots(1, len(groups), figsize=(1.2 + 0.5 * len(methods) * len(tasks) + 1.5, 3.4), sharey=True, squeeze=False,
                             gridspec_kw={"width_ratios": [len(ts) for ts in groups.values()]})
    w = 0.8 / len(methods)
    for ax, (g, ts) in zip(axes[0], groups.items()):
        for j, m in enumerate(methods):
            sm = s[s["method"] == m].set_index("task").reindex(ts)
            x = np.arange(len(ts)) + (j - (len(methods) - 1) / 2) * w
            ax.bar(x, sm["mean"], w, yerr=_yerr(sm["mean"], sm["ci95"]), color=method_color(m), label=method_label(m), capsize=2,
                   error_kw={"lw": 0.8})
            if show_samples:  # with a handful of samples the points say more than the interval
                for xi, t in zip(x, ts):
                    v = pd.to_numeric(d[(d["method"] == m) & (d["task"] == t)][metric], errors="coerce").dropna()
                    ax.scatter(np.full(len(v), xi), v, s=7, color="white", edgecolor="black", lw=0.5, zorder=3)
        ax.set_xticks(np.arange(len(ts)), [task_label(t) for t in ts])
        ax.set_title(g)
        ax.grid(axis="x", visible=False)
    axes[0][0].set_ylabel(f"{metric} (0-100, mean ± 95% CI" + (", dots: samples)" if show_samples else ")"))
    axes[0][0].set_ylim(0, 105)
    axes[0][-1].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.suptitle(title or f"Accuracy by task and method ({_model_title(df)})", fontsize=10)
    return fig


def _sweep_plot(s: pd.DataFrame, x: str, xlabel: str, s_full: pd.DataFrame | None, title: str, logx2: bool = False,
                annotate=None, ax=None):
    """One line per task of mean score +- CI against config column x; full attention dashed."""
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.2, 3.4))
    colors = task_colors(s["task"])
    for t, g in s.groupby("task", sort=False):
        g = g.dropna(subset=[x]).sort_values(x)
        ax.errorbar(g[x], g["mean"], yerr=_yerr(g["mean"], g["ci95"]), marker="o", ms=4, capsize=2, color=colors[t], label=task_label(t))
        if annotate:
            for _, r in g.iterrows():
                ax.annotate(annotate(r), (r[x], r["mean"]), textcoords="offset points", xytext=(3, 4), fontsize=7, color=colors[t])
        if s_full is not None:
            _full_line(ax, s_full, t, colors[t])
    if logx2:
        ax.set_xscale("log", base=2)
        _plain_log_ticks(ax.xaxis)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(SCORE_LABEL)
    ax.set_ylim(-2, 105)
    _legend_right(ax)
    ax.set_title(title)
    return fig if fig is not None else ax.figure


def _full_summary(df, metric):
    return A.summary(df[df["method"] == "full"], metric) if "full" in set(df["method"]) else None


def key_compression(df: pd.DataFrame, methods=None, metric: str = "score", title: str | None = None):
    """Score per key representation: SVD ranks (ascending), then exact keys, then quantized key formats, at one
    budget (paper.md claim 2a). Tick labels give the rank or the key bits/dim; full attention dashed."""
    d = df[df["method"] != "full"] if methods is None else df[df["method"].isin(methods)]
    if d.empty:
        return _empty("no key-compression results")
    s = A.summary(d, metric)
    d = d.assign(rank=pd.to_numeric(A.config_field(d, "rank"), errors="coerce"), key_format=A.config_field(d, "key_format"),
                 key_bits=pd.to_numeric(A.config_field(d, "key_bits"), errors="coerce"))
    info = d.groupby("method", sort=False).agg(rank=("rank", "first"), key_format=("key_format", "first"), key_bits=("key_bits", "median"))

    def order(m):
        r = info.loc[m]
        if 0 < r["rank"] < 1:  # a share of H*d (rank scaled to the model)
            return (0, 0, r["rank"])
        if r["rank"] > 0:
            return (0, 1, r["rank"])
        return (1, 0, -(r["key_bits"] if np.isfinite(r["key_bits"]) else 99))

    def label(m):
        r = info.loc[m]
        if 0 < r["rank"] < 1:
            return f"rank {100 * r['rank']:.3g}%\nof H·d"
        if r["rank"] > 0:
            return f"rank {int(r['rank'])}"
        fmt = "exact" if r["key_format"] in (None, "native") else str(r["key_format"])
        bits = f"\n{r['key_bits']:.2g} b/dim" if np.isfinite(r["key_bits"]) and fmt != "exact" else ""
        return fmt + bits

    ms = sorted(info.index, key=order)
    xi = {m: i for i, m in enumerate(ms)}
    fig, ax = plt.subplots(figsize=(1.6 + 0.7 * len(ms), 3.4))
    colors = task_colors(s["task"])
    s_full = _full_summary(df, metric)
    for t, g in s.groupby("task", sort=False):
        g = g[g["method"].isin(ms)].assign(x=lambda v: v["method"].map(xi)).sort_values("x")
        ax.errorbar(g["x"], g["mean"], yerr=_yerr(g["mean"], g["ci95"]), marker="o", ms=4, capsize=2, color=colors[t], label=task_label(t))
        if s_full is not None:
            _full_line(ax, s_full, t, colors[t])
    ax.set_xticks(range(len(ms)), [label(m) for m in ms], fontsize=8)
    ax.set_xlabel("key representation (low-rank SVD | stored pre-RoPE keys)")
    ax.set_ylabel(SCORE_LABEL)
    ax.set_ylim(-2, 105)
    _legend_right(ax)
    ax.set_title(title or f"Key compression ({_model_title(df)})")
    return fig


def landmark_precision(df: pd.DataFrame, methods=None, metric: str = "score", title: str | None = None):
    """Score against landmark bits per dimension (including scales), one line per task (paper.md claim 3)."""
    d = df[df["method"] != "full"] if methods is None else df[df["method"].isin(methods)]
    if d.empty:
        return _empty("no landmark-precision results")
    s = A.sweep(d, "landmark_bits", metric)
    fmt = d.assign(f=A.config_field(d, "landmark_format")).groupby("method")["f"].first()

    def ann(r):
        f = str(fmt.get(r["method"], r["method"]))
        return f.split(":")[0].replace("higgs-", "H")

    return _sweep_plot(s, "landmark_bits", "landmark bits / dimension (incl. scales)", _full_summary(df, metric),
                       title or f"Landmark precision ({_model_title(df)})", logx2=True, annotate=ann)


def chunk_size(df: pd.DataFrame, methods=None, metric: str = "score", title: str | None = None):
    """Score against landmark chunk size (tokens per landmark), one line per task (paper.md claim 2b)."""
    d = df[df["method"] != "full"] if methods is None else df[df["method"].isin(methods)]
    if d.empty:
        return _empty("no chunk-size results")
    s = A.sweep(d, "chunk_size", metric)
    return _sweep_plot(s, "chunk_size", "chunk size (tokens per landmark)", _full_summary(df, metric),
                       title or f"Landmark chunk size ({_model_title(df)})", logx2=True)


def residual_landmarks(df: pd.DataFrame, methods=None, metric: str = "score", title: str | None = None):
    """Score against landmark bits/dim; residual landmarks (meta-landmark + low-bit residual) starred against
    plain HIGGS landmarks, with the landmark memory saving against plain 2-bit annotated (paper.md claim 4)."""
    d = df[df["method"] != "full"] if methods is None else df[df["method"].isin(methods)]
    if d.empty:
        return _empty("no residual-landmark results")
    d = d.assign(residual=A.config_field(d, "landmark_format").astype(str).str.startswith("residual"))
    s = A.sweep(d, "landmark_bits", metric)
    res = d.groupby("method")["residual"].first()
    s["residual"] = s["method"].map(res).fillna(False).astype(bool)
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    colors = task_colors(s["task"])
    s_full = _full_summary(df, metric)
    for t, g in s.groupby("task", sort=False):
        plain, resid = g[~g["residual"]].sort_values("landmark_bits"), g[g["residual"]]
        ax.errorbar(plain["landmark_bits"], plain["mean"], yerr=_yerr(plain["mean"], plain["ci95"]), marker="o", ms=4, capsize=2, color=colors[t],
                    label=f"{task_label(t)}: plain")
        ax.errorbar(resid["landmark_bits"], resid["mean"], yerr=_yerr(resid["mean"], resid["ci95"]), marker="*", ms=11, ls="none", capsize=2,
                    color=colors[t], mec="black", mew=0.5, label=f"{task_label(t)}: residual")
        two = plain[np.isclose(plain["landmark_bits"].round(), 2)]
        for _, r in resid.iterrows():
            if len(two):
                saving = 100 * (1 - r["landmark_bits"] / two["landmark_bits"].iloc[0])
                ax.annotate(f"−{saving:.0f}% vs 2-bit", (r["landmark_bits"], r["mean"]), textcoords="offset points", xytext=(5, -12),
                            fontsize=7, color=colors[t])
        if s_full is not None:
            _full_line(ax, s_full, t, colors[t])
    ax.set_xscale("log", base=2)
    _plain_log_ticks(ax.xaxis)
    ax.set_xlabel("landmark bits / dimension (incl. scales)")
    ax.set_ylabel(SCORE_LABEL)
    ax.set_ylim(-2, 105)
    _legend_right(ax)
    ax.set_title(title or f"Residual landmarks ({_model_title(df)})")
    return fig


def budget_sweep(df: pd.DataFrame, families=("shadowkv", "yakv"), metric: str = "score", title: str | None = None):
    """Score against the sparse budget (tokens actually selected), one line per method family x task: does a
    bigger budget rescue ShadowKV? (paper.md claim 2: 10x does not)."""
    d = df.assign(family=df["method"].astype(str).str.split("@").str[0])
    d = d[d["family"].isin(families)]
    if d.empty:
        return _empty("no budget-sweep results")
    d = d.assign(budget_tokens=pd.to_numeric(A.config_field(d, "budget_tokens"), errors="coerce"))
    tasks = list(dict.fromkeys(d["task"]))
    fig, axes = _panels(len(tasks), 4.2, 3.4)
    s_full = _full_summary(df, metric)
    for ax, t in zip(axes, tasks):
        for i, fam in enumerate(families):
            g = d[(d["task"] == t) & (d["family"] == fam)]
            if g.empty:
                continue
            s = A.summary(g, metric).merge(g.groupby("method")["budget_tokens"].median().reset_index(), on="method").sort_values("budget_tokens")
            ax.errorbar(s["budget_tokens"], s["mean"], yerr=_yerr(s["mean"], s["ci95"]), marker=MARKERS[i], ms=4, capsize=2, color=method_color(fam),
                        label=method_label(fam))
        if s_full is not None:
            _full_line(ax, s_full, t, "black")
        ax.set_xscale("log", base=2)
        _plain_log_ticks(ax.xaxis)
        ax.set_xlabel("sparse budget (selected tokens / KV head)")
        ax.set_title(task_label(t))
        ax.legend(loc="best")
    axes[0].set_ylabel(SCORE_LABEL)
    axes[0].set_ylim(-2, 105)
    fig.suptitle(title or f"Sparse budget ({_model_title(df)})", fontsize=10)
    return fig


def accuracy_vs_memory(df: pd.DataFrame, metric: str = "score", per_task: bool = True, title: str | None = None,
                       annotate: str = "front"):
    """Mean score against GPU bytes per prompt token per layer (log x), every method a point, the Pareto frontier
    as a step line and its points outlined (paper.md claim 5). annotate: "front" (label frontier points),
    "all" or "none"."""
    s = A.accuracy_vs_memory(df, metric, per_task=per_task)
    s = s[np.isfinite(pd.to_numeric(s["device_B_per_token_layer"], errors="coerce"))] if len(s) else s
    if s.empty:
        return _empty("no memory accounting in these results")
    tasks = list(dict.fromkeys(s["task"]))
    n_m = s["method"].nunique() + 1  # + the frontier line
    fig, axes = _panels(len(tasks), 5.0 if n_m <= 12 else max(9.0 / len(tasks), 4.2), 3.8 + _legend_rows(n_m))
    for ax, t in zip(axes, tasks):
        g = s[s["task"] == t]
        for _, r in g.iterrows():
            ax.errorbar(r["device_B_per_token_layer"], r["mean"], yerr=_yerr([r["mean"]], [r["ci95"]]),
                        marker=method_marker(r["method"]), ms=6, color=method_color(r["method"]), capsize=2, elinewidth=0.8,
                        ecolor=matplotlib.colors.to_rgba(method_color(r["method"]), 0.3),  # faint: points matter here
                        label=method_label(r["method"]), mec="black" if r["on_front"] else "none")
            if annotate == "all" or (annotate == "front" and r["on_front"]):
                ax.annotate(method_label(r["method"]), (r["device_B_per_token_layer"], r["mean"]), textcoords="offset points",
                            xytext=(4, 4), fontsize=6.5)
        f = g[g["on_front"]].sort_values("device_B_per_token_layer")
        ax.step(f["device_B_per_token_layer"], f["mean"], where="post", color="black", lw=0.8, alpha=0.6, label="Pareto frontier")
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1, 2, 5)))
        _plain_log_ticks(ax.xaxis)
        ax.set_xlabel(MEM_LABEL + " (log)")
        ax.set_title(task_label(t))
    axes[0].set_ylabel(SCORE_LABEL)
    axes[0].set_ylim(-2, 105)
    _legend_right(axes[-1])
    fig.suptitle(title or f"Accuracy vs GPU memory ({_model_title(df)})", fontsize=10)
    return fig


def memory_breakdown(df: pd.DataFrame, title: str | None = None):
    """Stacked bars of GPU bytes/token/layer per method by storage category (landmarks, U, local, outliers ...),
    with the offloaded total as a hatched bar beside it."""
    b = A.memory_breakdown(df)
    if b.empty:
        return _empty("no memory categories in these results")
    methods = A.method_order(b["method"])
    cats = list(dict.fromkeys(b["category"]))
    cc = {c: TASK_COLORS[i % len(TASK_COLORS)] for i, c in enumerate(cats)}
    fig, ax = plt.subplots(figsize=(1.5 + 0.7 * len(methods), 3.6))
    x = np.arange(len(methods))
    for role, off, hatch in (("device", -0.2, None), ("offloaded", 0.2, "//")):
        bottom = np.zeros(len(methods))
        for c in cats:
            v = b[(b["role"] == role) & (b["category"] == c)].groupby("method")["B_per_token_layer"].median().reindex(methods).fillna(0).to_numpy()
            if v.any():
                ax.bar(x + off, v, 0.38, bottom=bottom, color=cc[c], hatch=hatch, edgecolor="white", lw=0.3,
                       label=c if role == "device" or c not in b[b["role"] == "device"]["category"].values else None)
                bottom += v
    ax.set_xticks(x, [method_label(m) for m in methods], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("bytes / prompt token / layer")
    ax.bar([0], [0], color="white", edgecolor="grey", label="solid: GPU")
    ax.bar([0], [0], color="white", edgecolor="grey", hatch="//", label="hatched: offloaded")
    _legend_right(ax)
    ax.set_title(title or f"Memory by category ({_model_title(df)})")
    return fig


def error_attribution(means: pd.DataFrame, title: str | None = None):
    """Stacked bars of the factorial attribution (analysis.factorial_attribution means): per model x task the
    loss against full attention split into budget, low-rank keys, landmark misses and their interaction
    (negative parts below zero); a black diamond marks the measured total loss."""
    if means is None or means.empty:
        return _empty("no complete 2x2 attribution cells (needs full, shadowkv, shadowkv_fullkeys, shadowkv_oracle, oracle)")
    labels = [f"{task_label(r.task)}" + (f"\n{r.model}" if means["model"].nunique() > 1 else "") + f"\n(n={r.n})" for r in means.itertuples()]
    x = np.arange(len(means))
    fig, ax = plt.subplots(figsize=(2.0 + 1.3 * len(means), 3.6))
    pos, neg = np.zeros(len(means)), np.zeros(len(means))
    for p in A.ATTRIBUTION_PARTS:
        v = means[p].to_numpy(float)
        bottom = np.where(v >= 0, pos, neg)
        ax.bar(x, v, 0.55, bottom=bottom, color=PART_COLORS[p], label=PART_LABELS[p], edgecolor="white", lw=0.5)
        pos += np.where(v >= 0, v, 0)
        neg += np.where(v < 0, v, 0)
    ax.errorbar(x, means["total_loss"], yerr=means["total_loss_ci95"].fillna(0), fmt="D", color="black", ms=5, capsize=3, label="total loss (full − ShadowKV)")
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylabel("score points lost vs full attention")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title(title or "Where ShadowKV's accuracy goes (2x2 factorial attribution)")
    return fig


def factorial_cells(means: pd.DataFrame, task: str | None = None, model: str | None = None):
    """The 2x2 grid of mean scores {low-rank, exact keys} x {landmark, oracle selection}, full attention in the
    title, for one model x task (default: the first)."""
    if means is None or means.empty:
        return _empty("no complete 2x2 attribution cells")
    m = means
    if task is not None:
        m = m[m["task"] == task]
    if model is not None:
        m = m[m["model"] == model]
    r = m.iloc[0]
    grid = np.array([[r["lowrank_landmark"], r["lowrank_oracle"]], [r["exact_landmark"], r["exact_oracle"]]])
    fig, ax = plt.subplots(figsize=(3.8, 3.2))
    im = ax.imshow(grid, cmap="cividis", vmin=0, vmax=100)
    for i in range(2):
        for j in range(2):
            ax.text(j, i, f"{grid[i, j]:.1f}", ha="center", va="center", color="white" if grid[i, j] < 60 else "black", fontsize=11)
    ax.set_xticks([0, 1], ["landmark\nselection", "oracle\nselection"])
    ax.set_yticks([0, 1], ["low-rank keys", "exact keys"])
    ax.grid(False)
    fig.colorbar(im, ax=ax, label=SCORE_LABEL, shrink=0.8)
    ax.set_title(f"{task_label(r['task'])}: full = {r['full']:.1f} (n={r['n']})")
    return fig


def attention_profile(records: pd.DataFrame, by: str = "layer", metrics=A.ATTN_METRICS, methods=None, bins: int = 10, title: str | None = None):
    """Attention-level metrics per method along one axis (by = 'layer', 'position' or 'step'): recall of the
    oracle's top-B, attention mass covered, and the two output errors (selection / approximation)."""
    if records is None or len(records) == 0:
        return _empty("no attention records (run with record=True)")
    r = records if methods is None else records[records["method"].isin(methods)]
    t = A.attention_by(r, by=by, bins=bins, metrics=metrics, group=("method",))
    metrics = [m for m in metrics if m in t.columns]
    n_methods = t["method"].nunique()
    fig, axes = _panels(len(metrics), 3.3, 2.9 + _legend_rows(n_methods), sharey=False)
    xlabel = {"layer": "layer", "position": "mean selected position (share of prompt)", "step": "generated token index"}[by]
    for ax, m in zip(axes, metrics):
        for i, (meth, g) in enumerate(t.groupby("method", sort=False)):
            ax.errorbar(g[by], g[m], yerr=g.get(f"{m}_sem", pd.Series(0, index=g.index)).fillna(0), marker=MARKERS[i % len(MARKERS)], ms=3,
                        color=method_color(meth), label=method_label(meth), capsize=1.5, lw=1)
        ax.set_title(ATTN_LABELS.get(m, m))
        if m in ("recall", "mass"):
            ax.set_ylim(-0.02, 1.02)
    axes[0].set_ylabel("mean (± s.e.) over heads,\nsteps and samples")
    fig.supxlabel(xlabel, fontsize=10)
    _legend_right(axes[-1])
    fig.suptitle(title or f"Attention-level diagnostics by {by}", fontsize=10)
    return fig


def depth_profile(df: pd.DataFrame, methods=None, title: str | None = None):
    """MultiNeedle: share of needles found per depth (position of the needle in the prompt), per method."""
    s = A.depth_scores(df if methods is None else df[df["method"].isin(methods)])
    if s.empty:
        return _empty("no per-depth (metric_depth_*) columns: MultiNeedle not in these results")
    fig, ax = plt.subplots(figsize=(5.2, 3.2))
    for i, (m, g) in enumerate(s.groupby("method", sort=False)):
        g = g.sort_values("depth")
        ax.errorbar(g["depth"], g["mean"], yerr=_yerr(g["mean"], g["ci95"]), marker=MARKERS[i % len(MARKERS)], ms=4, capsize=2, color=method_color(m),
                    label=method_label(m))
    ax.set_xlabel("needle depth (% of prompt)")
    ax.set_ylabel("depth score (share of max)")
    ax.legend(loc="best")
    ax.set_title(title or "MultiNeedle: retrieval by needle depth")
    return fig


def text2json_errors(errors: pd.DataFrame, title: str | None = None):
    """Stacked bars per method of the gold fields' status (correct / wrong value / missing value / missing
    entity) as shares, plus extra entities per sample and unparseable answers (from analysis.text2json_field_errors)."""
    if errors is None or errors.empty:
        return _empty("no Text2JSON predictions with gold to compare")
    c = A.error_counts(errors, by=("method",))
    gold_cols = [s for s in ("correct", "wrong_value", "missing_value", "missing_entity") if s in c.columns]
    share = c[gold_cols].div(c[gold_cols].sum(axis=1).replace(0, np.nan), axis=0)
    colors = {"correct": OKABE_ITO["green"], "wrong_value": OKABE_ITO["orange"], "missing_value": OKABE_ITO["yellow"],
              "missing_entity": OKABE_ITO["vermillion"]}
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(min(4 + 0.8 * len(c), 18), 3.6), gridspec_kw={"width_ratios": [2, 1]})
    x = np.arange(len(c))
    bottom = np.zeros(len(c))
    for s in gold_cols:
        ax.bar(x, share[s].fillna(0), 0.6, bottom=bottom, color=colors[s], label=s.replace("_", " "))
        bottom += share[s].fillna(0).to_numpy()
    ax.set_xticks(x, [method_label(m) for m in c.index], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("share of gold fields")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    n_samples = errors.groupby("method")["sample_id"].nunique().reindex(c.index)
    extra = c.get("extra_entity", pd.Series(0, index=c.index)) / n_samples
    unp = c.get("unparseable", pd.Series(0, index=c.index)) / n_samples
    ax2.bar(x - 0.2, extra, 0.4, color=OKABE_ITO["purple"], label="extra entities")
    ax2.bar(x + 0.2, unp, 0.4, color=OKABE_ITO["grey"], label="unparseable")
    ax2.set_xticks(x, [method_label(m) for m in c.index], rotation=30, ha="right", fontsize=8)
    ax2.set_ylabel("per sample")
    ax2.legend(loc="best")
    fig.suptitle(title or "Text2JSON: which fields go wrong", fontsize=10)
    return fig


def errors_by_position(errors: pd.DataFrame, bins: int = 5, title: str | None = None):
    """Share of Text2JSON gold fields wrong or missing against where the entity sits in the prompt, per method."""
    e = errors.dropna(subset=["position"]) if errors is not None and len(errors) else None
    if e is None or e.empty:
        return _empty("no entity positions (give the prompts to text2json_field_errors)")
    e = e[e["status"].isin(["correct", "wrong_value", "missing_value", "missing_entity"])]
    e = e.assign(bucket=A._bucket(e["position"], bins, 0.0, 1.0), wrong=(e["status"] != "correct").astype(float))
    fig, ax = plt.subplots(figsize=(5.2, 3.2 + _legend_rows(e["method"].nunique())))
    for i, (m, g) in enumerate(e.groupby("method", sort=False)):
        s = g.groupby("bucket")["wrong"].mean()
        ax.plot(s.index, s.values, marker=MARKERS[i % len(MARKERS)], color=method_color(m), label=method_label(m))
    ax.set_xlabel("entity position in the prompt (share of prompt)")
    ax.set_ylabel("share of fields wrong or missing")
    ax.set_ylim(-0.02, 1.02)
    _legend_right(ax)
    ax.set_title(title or "Text2JSON errors by entity position")
    return fig


def _pick(cols, *names):
    for n in names:
        if n in cols:
            return n
    return None


def decode_speed(bench: pd.DataFrame, source: str = "benchmarks/results", title: str | None = None):
    """Decode throughput against context length, one line per method, one panel per batch size, from the GPU
    benchmarks' JSON rows (analysis.load_benchmarks; decode_step.json's one-layer step times give tokens/s per
    layer). Without benchmark files, a figure that says so."""
    if bench is None or bench.empty:
        return _empty(f"No GPU decode benchmark results found in {source}/*.json.\nRun the GPU decode benchmark "
                      "(benchmarks/README.md) to fill this figure.")
    ys = {"tokens_per_s_layer": "decode tokens/s of one layer (1 / step time)", "decode_tok_s": "decode tokens / s",
          "tokens_per_s": "decode tokens / s", "tok_s": "decode tokens / s", "throughput": "decode tokens / s"}
    y = next((c for c in ys if c in bench and bench[c].notna().any()), None)
    if y is None:
        return _empty(f"benchmark rows in {source} have no tokens/s column (looked for {', '.join(ys)})")
    b = bench[bench[y].notna()]
    if "table" in b and b["table"].nunique() > 1:  # several tables carry tokens/s: the step benchmark's first
        b = b[b["table"] == ("steps" if (b["table"] == "steps").any() else b["table"].value_counts().index[0])]
    x = next((c for c in ("L", "context", "context_len", "prompt_len", "prompt_tokens", "tokens") if c in b and b[c].notna().any()), None)
    m = next((c for c in ("method", "name", "impl") if c in b), None)
    bcol = next((c for c in ("B", "batch", "batch_size") if c in b and b[c].notna().any()), None)
    b = b.assign(_m=b[m].astype(str) if m else "all", _b=b[bcol] if bcol else "")
    batches = sorted(b["_b"].dropna().unique())[:4]
    fig, axes = _panels(len(batches), 3.8, 3.4, sharey=False)
    for ax, bs in zip(axes, batches):
        g0 = b[b["_b"] == bs]
        for i, (meth, g) in enumerate(g0.groupby("_m", sort=False)):
            style = "--" if "nocache" in meth else "-"
            if x is None:
                ax.bar(i, g[y].median(), color=method_color(meth.replace("_nocache", "")), label=meth)
                continue
            gg = g.groupby(x)[y].median().sort_index()
            ax.plot(gg.index, gg.values, style, marker=MARKERS[i % len(MARKERS)], color=method_color(meth.split("_")[0]), label=meth)
        if x is not None:
            ax.set_xscale("log", base=2)
            _plain_log_ticks(ax.xaxis)
            ax.set_xlabel("context length (tokens)")
        ax.set_yscale("log")
        ax.set_title(f"batch {bs:g}" if bcol and isinstance(bs, (int, float)) else (f"batch {bs}" if bcol else ""))
    axes[0].set_ylabel(ys[y])
    _legend_right(axes[-1])
    dev = b["device"].dropna().iloc[0] if "device" in b and b["device"].notna().any() else ""
    fig.suptitle(title or f"Decode speed {dev}".strip(), fontsize=10)
    return fig


def capacity(bench: pd.DataFrame, title: str | None = None):
    """Largest batch that fits the memory cap per method (and its estimated tokens/s), from the capacity
    benchmark's rows (capacity.json: method, context, max_batch, tokens_per_s[...]). ShadowKV's own headline is
    up to 6x the batch of full attention."""
    if bench is None or bench.empty or "max_batch" not in bench or bench["max_batch"].dropna().empty:
        return _empty("No capacity benchmark results (capacity.json) found.")
    b = bench[bench["max_batch"].notna()]
    tps = [c for c in b.columns if c.startswith("tokens_per_s[")]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(8.5, 3.4))
    x = np.arange(len(b))
    ax.bar(x, b["max_batch"], color=[method_color(m) for m in b["method"]])
    ax.set_xticks(x, [method_label(m) for m in b["method"]], rotation=20, ha="right")
    ctx = f" at {int(b['context'].iloc[0]):,} tokens" if "context" in b else ""
    ax.set_ylabel(f"largest batch{ctx}")
    for i, v in enumerate(b["max_batch"]):
        ax.annotate(f"{int(v)}", (i, v), ha="center", va="bottom", fontsize=8)
    est = [(c[len("tokens_per_s["):-1], float(v)) for c in tps for v in b[c] if pd.notna(v)]  # (variant, tokens/s)
    ax2.barh(range(len(est)), [v for _, v in est], color=[method_color(k.split("_")[0]) for k, _ in est],
             hatch=None, edgecolor="white")
    for i, (k, _) in enumerate(est):
        if "nocache" in k:
            ax2.patches[i].set_hatch("//")
    ax2.set_yticks(range(len(est)), [k for k, _ in est], fontsize=8)
    ax2.invert_yaxis()
    ax2.set_xlabel("est. decode tokens / s at that batch")
    fig.suptitle(title or "Capacity under the GPU memory cap (from the step benchmark)", fontsize=10)
    return fig


def landmark_scoring(bench: pd.DataFrame, title: str | None = None):
    """Cost per landmark of the fused scoring kernel by landmark format and selection rule, from the newest
    `scoring` table of the GPU benchmarks (bench_decode_step.py; analysis.scoring_rows), and, when that file holds a
    sweep (--sweep-scoring), every tile / warps / kept-logits configuration beside it. The price of landmark
    precision at decode time: the study's HIGGS landmarks are 7x smaller than bf16 ones."""
    s = A.scoring_rows(bench)
    if s.empty:
        return _empty("No landmark scoring benchmark rows (bench_decode_step.py writes them) found.")
    base = s[s["rule"].isin(["softmax_max", "mean_dot"])]
    sweep = s[~s["rule"].isin(["softmax_max", "mean_dot"])].sort_values("ns_per_landmark")
    fig, axes = _panels(1 + (not sweep.empty), 4.2, 3.2, sharey=False)
    ax = axes[0]
    fmts = list(dict.fromkeys(base["landmarks"]))
    for j, rule in enumerate(["softmax_max", "mean_dot"]):
        v = [base[(base["landmarks"] == f) & (base["rule"] == rule)]["ns_per_landmark"].median() for f in fmts]
        x = np.arange(len(fmts)) + (j - 0.5) * 0.38
        ax.bar(x, v, 0.38, label=rule.replace("_", "-"), color=["#4C72B0", "#DD8452"][j])
        for xi, vi in zip(x, v):
            if np.isfinite(vi):
                ax.annotate(f"{vi:.3f}", (xi, vi), ha="center", va="bottom", fontsize=7)
    ax.set_xticks(np.arange(len(fmts)), fmts)
    ax.set_ylabel("ns per landmark")
    ax.set_title("default kernels", fontsize=9)
    ax.legend(fontsize=8)
    if not sweep.empty:
        ax2 = axes[1]
        names = [f"{f} {r.replace('softmax_max ', '')}" for f, r in zip(sweep["landmarks"], sweep["rule"])]
        ax2.barh(range(len(sweep)), sweep["ns_per_landmark"],
                 color=["#4C72B0" if f == "bf16" else "#55A868" for f in sweep["landmarks"]])
        ax2.set_yticks(range(len(sweep)), names, fontsize=7)
        ax2.invert_yaxis()
        ax2.set_xlabel("ns per landmark (softmax-max)")
        ax2.set_title("tile (bm), warps (w), kept logits", fontsize=9)
    src = s["source"].iloc[0] if "source" in s else ""
    dev = s["device"].dropna().iloc[0] if "device" in s and s["device"].notna().any() else ""
    fig.suptitle(title or f"Landmark scoring cost {dev} ({src})".strip(), fontsize=10)
    return fig


def cpu_decode_speed(df: pd.DataFrame, title: str | None = None):
    """Decode tokens/s per method measured by the runner (the machine the results were made on; on CPU this
    is the simulation's speed, not a serving number)."""
    if "decode_tok_s" not in df or df["decode_tok_s"].dropna().empty:
        return _empty("no decode_tok_s in these results")
    s = A.summary(df, "decode_tok_s", by=("method",))
    fig, ax = plt.subplots(figsize=(1.5 + 0.6 * len(s), 3.2))
    ax.bar(range(len(s)), s["mean"], yerr=s["ci95"].fillna(0), color=[method_color(m) for m in s["method"]], capsize=2)
    ax.set_xticks(range(len(s)), [method_label(m) for m in s["method"]], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("decode tokens / s (runner, this machine)")
    ax.set_title(title or "Measured decode speed of the results")
    return fig


__all__ = [
    "save", "method_color", "method_label", "task_label", "accuracy_by_task", "key_compression", "landmark_precision", "chunk_size",
    "residual_landmarks", "budget_sweep", "accuracy_vs_memory", "memory_breakdown", "error_attribution", "factorial_cells",
    "attention_profile", "depth_profile", "text2json_errors", "errors_by_position", "decode_speed", "capacity", "cpu_decode_speed",
]
