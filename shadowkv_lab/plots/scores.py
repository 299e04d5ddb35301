"""Score figures: accuracy per task and method, MultiNeedle retrieval by needle depth."""

from __future__ import annotations


import numpy as np
import pandas as pd

from .. import analysis as A
from . import labels as L
from .style import empty, figure, interval_note, legend, model_title, yerr


HATCHES = ("", "////", "....", "xxxx", "\\\\\\\\")


def _hatches(methods, colors) -> dict:
    """Budget variants share their method's colour (labels.method_color); side by side as bars they get hatches."""
    seen: dict = {}
    out = {}
    for m in methods:
        k = seen.get(colors.get(m), 0)
        out[m] = HATCHES[k % len(HATCHES)]
        seen[colors.get(m)] = k + 1
    return out


def _n_range(n: pd.Series) -> str:
    lo, hi = int(n.min()), int(n.max())
    return f"n={lo}" if lo == hi else f"n={lo}-{hi}"


def accuracy_by_task(df: pd.DataFrame, metric: str = "score", methods=None, tasks=None, title: str | None = None,
                     show_samples: bool | None = None):
    """Grouped bars: mean score per task and method (95% CI from 5 samples on, clipped to 0-100), context-intensive
    tasks left, easy (RULER-style) tasks right. show_samples (default: when <= 10 samples per bar) adds each
    sample's score as a dot."""
    d = df if methods is None else df[df["method"].isin(methods)]
    s = A.summary(d, metric)
    if s.empty:
        return empty("no results to plot")
    tasks = list(dict.fromkeys(tasks or s["task"]))
    methods = list(methods) if methods is not None else A.method_order(s["method"])
    names, colors = L.method_labels(d), L.method_colors(d)
    if show_samples is None:
        show_samples = s["n"].max() <= 10
    groups = {g: [t for t in tasks if A.task_group(t) == g] for g in ("context-intensive", "easy")}
    groups = {g: ts for g, ts in groups.items() if ts}
    wide = len(methods) * len(tasks) > 8
    fig, axes = figure("page" if wide else "column", 2.6, 1, len(groups), sharey=True, squeeze=False,
                       gridspec_kw={"width_ratios": [len(ts) for ts in groups.values()]})
    w = 0.8 / len(methods)
    hatches = _hatches(methods, colors)
    for ax, (g, ts) in zip(axes[0], groups.items()):
        for j, m in enumerate(methods):
            sm = s[s["method"] == m].set_index("task").reindex(ts)
            x = np.arange(len(ts)) + (j - (len(methods) - 1) / 2) * w
            ax.bar(x, sm["mean"], w, yerr=yerr(sm["mean"], sm["ci95"]), color=colors.get(m), label=names.get(m, m), capsize=2,
                   error_kw={"lw": 0.8}, hatch=hatches[m], edgecolor="white" if hatches[m] else None, lw=0)
            for xi, v in zip(x, sm["mean"]):  # a bar at ~0 is invisible: say it is there
                if np.isfinite(v) and v < 1.5:
                    ax.text(xi, 1.5, f"{v:.0f}", ha="center", va="bottom", fontsize=6, color=colors.get(m))
            if show_samples:  # with a handful of samples the points say more than any interval
                for xi, t in zip(x, ts):
                    v = pd.to_numeric(d[(d["method"] == m) & (d["task"] == t)][metric], errors="coerce").dropna()
                    ax.scatter(np.full(len(v), xi), v, s=6, color="white", edgecolor="black", lw=0.5, zorder=3)
        # long names wrapped: side by side, "RULER NIAH multi-key" ran into its neighbour's label; each task's n,
        # since tasks of one figure can have run on very different numbers of samples
        ax.set_xticks(np.arange(len(ts)), [f"{L.task_label(t, wrap=15)}\n({_n_range(s[s['task'] == t]['n'])})" for t in ts])
        ax.set_title(g)
        ax.grid(axis="x", visible=False)
    axes[0][0].set_ylabel(f"{metric} (0-100)\n{interval_note(s['n'])}")
    axes[0][0].set_ylim(0, 105)
    legend(axes[0][-1], ncol=min(len(methods), 3))
    fig.suptitle(title or f"Accuracy by task and method ({model_title(df)})")
    return fig


def depth_profile(df: pd.DataFrame, methods=None, title: str | None = None):
    """MultiNeedle: share of needles found per depth (position of the needle in the prompt), per method."""
    d = df if methods is None else df[df["method"].isin(methods)]
    s = A.depth_scores(d)
    if s.empty:
        return empty("no per-depth (metric_depth_*) columns: MultiNeedle not in these results")
    names, colors = L.method_labels(d), L.method_colors(d)
    fig, ax = figure("column", 2.6)
    for i, (m, g) in enumerate(s.groupby("method", sort=False)):
        g = g.sort_values("depth")
        ax.errorbar(g["depth"], g["mean"], yerr=yerr(g["mean"], g["ci95"]), marker=L.MARKERS[i % len(L.MARKERS)], capsize=2,
                    color=colors.get(m), label=names.get(m, m))
    ax.set_xlabel("needle depth (% of prompt)")
    ax.set_ylabel(f"depth score (0-100)\n{interval_note(s['n'])}")
    ax.set_ylim(-2, 105)
    legend(ax, ncol=2)
    ax.set_title(title or "MultiNeedle: retrieval by needle depth")
    return fig
