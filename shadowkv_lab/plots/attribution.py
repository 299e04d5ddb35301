"""Error-attribution figures: the 2x2 factorial split of ShadowKV's loss, and the grid of its four cells."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import analysis as A
from ..analysis.stats import MIN_N_CI
from . import labels as L
from .style import empty, figure, legend

SCORE_LABEL = "score (0-100)"

PART_COLORS = {"budget_loss": L.OKABE_ITO["grey"], "key_loss": L.OKABE_ITO["vermillion"], "landmark_loss": L.OKABE_ITO["blue"],
               "interaction": L.OKABE_ITO["purple"]}

PART_LABELS = {"budget_loss": "budget (oracle vs full)", "key_loss": "low-rank keys", "landmark_loss": "landmark misses",
               "interaction": "interaction"}



def error_attribution(means: pd.DataFrame, title: str | None = None, per: pd.DataFrame | None = None):
    """Stacked bars of the factorial attribution (analysis.factorial_attribution means): per model x task the
    loss against full attention split into budget, low-rank keys, landmark misses and their interaction
    (negative parts below zero); a black diamond marks the measured total loss (its 95% CI from 5 samples on; with
    `per`, the per-sample table, each sample's total loss as a dot when there are fewer)."""
    if means is None or means.empty:
        return empty("no complete 2x2 attribution cells (needs full, shadowkv, shadowkv_fullkeys, shadowkv_oracle, oracle)")
    # context-intensive tasks left, easy ones right, as in accuracy_by_task
    means = means.iloc[np.argsort([A.task_group(t) != "context-intensive" for t in means["task"]], kind="stable")]
    labels = [f"{L.task_label(r.task, wrap=15)}" + (f"\n{r.model}" if means["model"].nunique() > 1 else "") + f"\n(n={r.n})" for r in means.itertuples()]
    x = np.arange(len(means))
    fig, ax = figure("page" if len(means) > 2 else "column", 2.6)
    pos, neg = np.zeros(len(means)), np.zeros(len(means))
    for p in A.ATTRIBUTION_PARTS:
        v = means[p].to_numpy(float)
        bottom = np.where(v >= 0, pos, neg)
        ax.bar(x, v, 0.55, bottom=bottom, color=PART_COLORS[p], label=PART_LABELS[p], edgecolor="white", lw=0.5)
        pos += np.where(v >= 0, v, 0)
        neg += np.where(v < 0, v, 0)
    ax.errorbar(x, means["total_loss"], yerr=means["total_loss_ci95"].fillna(0), fmt="D", color="black", ms=4, capsize=3, label="total loss (full − ShadowKV)")
    if per is not None and len(per) and means["n"].min() < MIN_N_CI:  # small n: every sample's total loss, no interval
        for xi, r in zip(x, means.itertuples()):
            v = per[(per["task"] == r.task) & (per["model"] == r.model)]["total_loss"] if "model" in per else per[per["task"] == r.task]["total_loss"]
            ax.scatter(np.full(len(v), xi + 0.33), v, s=8, color="white", edgecolor="black", lw=0.5, zorder=3,
                       label=f"total loss per sample (n < {MIN_N_CI}: no CI)")
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(x, labels, fontsize=6)
    ax.set_ylabel("score points lost vs full attention")
    legend(ax, ncol=2)
    ax.set_title(title or "ShadowKV's loss, 2x2 attribution")
    return fig



def factorial_cells(means: pd.DataFrame, task: str | None = None, model: str | None = None):
    """The 2x2 grid of mean scores {low-rank, exact keys} x {landmark, oracle selection}, full attention in the
    title, for one model x task (default: the first)."""
    if means is None or means.empty:
        return empty("no complete 2x2 attribution cells")
    m = means
    if task is not None:
        m = m[m["task"] == task]
    if model is not None:
        m = m[m["model"] == model]
    r = m.iloc[0]
    grid = np.array([[r["lowrank_landmark"], r["lowrank_oracle"]], [r["exact_landmark"], r["exact_oracle"]]])
    fig, ax = figure("column", 2.4)
    im = ax.imshow(grid, cmap="cividis", vmin=0, vmax=100)
    for i in range(2):
        for j in range(2):
            ax.text(j, i, f"{grid[i, j]:.1f}", ha="center", va="center", color="white" if grid[i, j] < 60 else "black", fontsize=6)
    ax.set_xticks([0, 1], ["landmark\nselection", "oracle\nselection"])
    ax.set_yticks([0, 1], ["low-rank keys", "exact keys"])
    ax.grid(False)
    fig.colorbar(im, ax=ax, label=SCORE_LABEL, shrink=0.8)
    ax.set_title(f"{L.task_label(r['task'])}: full = {r['full']:.1f} (n={r['n']})")
    return fig

