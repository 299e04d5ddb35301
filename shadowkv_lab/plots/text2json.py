"""Text2JSON figures: which gold fields go wrong per method, and where in the prompt the wrong entities sit."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import analysis as A
from ..analysis.attention import _bucket
from . import labels as L
from .style import empty, figure, legend

def text2json_errors(errors: pd.DataFrame, title: str | None = None, rows: pd.DataFrame | None = None):
    """Stacked bars per method of the gold fields' status (correct / wrong value / missing value / missing
    entity) as shares, plus extra entities per sample and unparseable answers (from analysis.text2json_field_errors)."""
    if errors is None or errors.empty:
        return empty("no Text2JSON predictions with gold to compare")
    label, color = L.styler(rows)
    c = A.error_counts(errors, by=("method",))
    gold_cols = [s for s in ("correct", "wrong_value", "missing_value", "missing_entity") if s in c.columns]
    share = c[gold_cols].div(c[gold_cols].sum(axis=1).replace(0, np.nan), axis=0)
    colors = {"correct": L.OKABE_ITO["green"], "wrong_value": L.OKABE_ITO["orange"], "missing_value": L.OKABE_ITO["yellow"],
              "missing_entity": L.OKABE_ITO["vermillion"]}
    fig, (ax, ax2) = figure("page", 2.8, 1, 2, gridspec_kw={"width_ratios": [2, 1]})
    x = np.arange(len(c))
    bottom = np.zeros(len(c))
    for s in gold_cols:
        ax.bar(x, share[s].fillna(0), 0.6, bottom=bottom, color=colors[s], label=s.replace("_", " "))
        bottom += share[s].fillna(0).to_numpy()
    ax.set_xticks(x, [label(m) for m in c.index], rotation=30, ha="right", fontsize=6)
    ax.set_ylabel("share of gold fields")
    ax.legend(loc="upper left", fontsize=6)
    n_samples = errors.groupby("method")["sample_id"].nunique().reindex(c.index)
    extra = c.get("extra_entity", pd.Series(0, index=c.index)) / n_samples
    unp = c.get("unparseable", pd.Series(0, index=c.index)) / n_samples
    ax2.bar(x - 0.2, extra, 0.4, color=L.OKABE_ITO["purple"], label="extra entities")
    ax2.bar(x + 0.2, unp, 0.4, color=L.OKABE_ITO["grey"], label="unparseable")
    ax2.set_xticks(x, [label(m) for m in c.index], rotation=30, ha="right", fontsize=6)
    ax2.set_ylabel("per sample")
    ax2.legend(loc="best")
    fig.suptitle(title or "Text2JSON: which fields go wrong")
    return fig



def errors_by_position(errors: pd.DataFrame, bins: int = 5, title: str | None = None, rows: pd.DataFrame | None = None):
    """Share of Text2JSON gold fields wrong or missing against where the entity sits in the prompt, per method."""
    label, color = L.styler(rows)
    e = errors.dropna(subset=["position"]) if errors is not None and len(errors) else None
    if e is None or e.empty:
        return empty("no entity positions (give the prompts to text2json_field_errors)")
    e = e[e["status"].isin(["correct", "wrong_value", "missing_value", "missing_entity"])]
    e = e.assign(bucket=_bucket(e["position"], bins, 0.0, 1.0), wrong=(e["status"] != "correct").astype(float))
    fig, ax = figure("column", 2.6)
    for i, (m, g) in enumerate(e.groupby("method", sort=False)):
        s = g.groupby("bucket")["wrong"].mean()
        ax.plot(s.index, s.values, marker=L.MARKERS[i % len(L.MARKERS)], color=color(m), label=label(m))
    ax.set_xlabel("entity position (share of the prompt)")
    ax.set_ylabel("fields wrong or missing")
    ax.set_ylim(-0.02, 1.02)
    legend(ax)
    ax.set_title(title or "Text2JSON errors by entity position")
    return fig

