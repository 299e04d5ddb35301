"""Attention-level figures: recall, attention mass and output errors per method by layer, position or step."""

from __future__ import annotations

import pandas as pd

from .. import analysis as A
from . import labels as L
from .style import empty, figure, legend

# two lines each: four panels share a page width, and one-line titles ran into each other
ATTN_LABELS = {"recall": "recall of the\noracle's top-B", "mass": "attention mass\ncovered",
               "err_selection": "output error:\nselection", "err_approx": "output error:\napproximation"}



def attention_profile(records: pd.DataFrame, by: str = "layer", metrics=A.ATTN_METRICS, methods=None, bins: int = 10, title: str | None = None,
                      rows: pd.DataFrame | None = None):
    """Attention-level metrics per method along one axis (by = 'layer', 'position' or 'step'): recall of the
    oracle's top-B, attention mass covered, and the two output errors (selection / approximation). rows: the
    results rows of these records, for the methods' labels and colours."""
    label, color = L.styler(rows)
    if records is None or len(records) == 0:
        return empty("no attention records (run with record=True)")
    r = records if methods is None else records[records["method"].isin(methods)]
    t = A.attention_by(r, by=by, bins=bins, metrics=metrics, group=("method",))
    metrics = [m for m in metrics if m in t.columns]
    n_methods = t["method"].nunique()
    fig, axes = figure("page", 2.2 + 0.12 * (n_methods // 3), 1, len(metrics), sharey=False, squeeze=False)
    axes = axes[0]
    xlabel = {"layer": "layer", "position": "selected position\n(share of prompt)", "step": "generated token"}[by]
    for ax, m in zip(axes, metrics):
        for i, (meth, g) in enumerate(t.groupby("method", sort=False)):
            ax.errorbar(g[by], g[m], yerr=g.get(f"{m}_sem", pd.Series(0, index=g.index)).fillna(0), marker=L.MARKERS[i % len(L.MARKERS)], ms=3,
                        color=color(meth), label=label(meth), capsize=1.5, lw=1)
        ax.set_title(ATTN_LABELS.get(m, m))
        ax.set_xlabel(xlabel)
        if m in ("recall", "mass"):
            ax.set_ylim(-0.02, 1.02)
    axes[0].set_ylabel("mean ± s.e. (heads,\nsteps, samples)")
    legend(axes[-1], max_right=0)  # below the figure: beside it, the legend took a third of the panels' width
    fig.suptitle(title or f"Attention-level diagnostics by {by}")
    return fig

