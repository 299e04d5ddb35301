"""Memory figures: accuracy against GPU bytes per token, and bytes per token by storage category."""

from __future__ import annotations

import matplotlib
import matplotlib.ticker
import numpy as np
import pandas as pd

from .. import analysis as A
from . import labels as L
from .style import empty, figure, interval_note, legend, model_title, panels, plain_log_ticks, yerr

MEM_LABEL = "GPU bytes / token / layer"
ABLATION_GREY = "#BBBBBB"


GREY_LABEL, FRONTIER_LABEL = "ablations / diagnostics", "Pareto frontier (study's methods; black edge)"


def accuracy_vs_memory(df: pd.DataFrame, metric: str = "score", per_task: bool = True, title: str | None = None):
    """Mean score against GPU bytes per prompt token per layer (log x). The study's methods (labels.MAIN_METHODS and
    their budget variants) in their family's colour, each with its own marker named in the legend (methods at one
    memory point, such as ShadowKV's budgets, stay apart without text on the axes), the Pareto frontier drawn over
    them alone; every other config (ablations, diagnostics) a small grey point, unnamed."""
    s = A.accuracy_vs_memory(df, metric, per_task=per_task)
    s = s[np.isfinite(pd.to_numeric(s["device_B_per_token_layer"], errors="coerce"))] if len(s) else s
    if s.empty:
        return empty("no memory accounting in these results")
    first = df.drop_duplicates("method")
    cfg = dict(zip(first["method"], first["config"])) if "config" in first else {}
    main = {m: L.is_main(m, cfg.get(m)) for m in s["method"]}
    names, colors = L.method_labels(df), L.method_colors(df)
    mains = A.method_order([m for m in dict.fromkeys(s["method"]) if main[m]])
    markers = {m: L.MARKERS[i % len(L.MARKERS)] for i, m in enumerate(mains)}
    tasks = list(dict.fromkeys(s["task"]))
    fig, axes = panels(len(tasks), 2.8)
    for ax, t in zip(axes, tasks):
        g = s[s["task"] == t]
        mg = g[g["method"].map(main)].sort_values("method", key=lambda m: m.map(mains.index))  # the legend's order
        front = A.pareto_front(mg["device_B_per_token_layer"], mg["mean"])
        for (_, r), on in zip(mg.iterrows(), front):
            c = colors.get(r["method"])
            ax.errorbar(r["device_B_per_token_layer"], r["mean"], yerr=yerr([r["mean"]], [r["ci95"]]),
                        marker=markers[r["method"]], ms=5, color=c, ecolor=matplotlib.colors.to_rgba(c, 0.4), capsize=1.5,
                        elinewidth=0.7, zorder=3, mec="black" if on else c, mew=0.6, label=names.get(r["method"], r["method"]))
        abl = g[~g["method"].map(main)]
        if len(abl):
            ax.scatter(abl["device_B_per_token_layer"], abl["mean"], s=10, color=ABLATION_GREY, zorder=1,
                       label=GREY_LABEL)
        f = mg[front].sort_values("device_B_per_token_layer")
        # The staircase runs on to the right edge: the best score reachable within each memory. Stopping at its last
        # point hid it under the markers when the frontier's points sit close together (YAKV's budgets).
        ax.set_xscale("log")
        right = ax.get_xlim()[1]
        fx = [*f["device_B_per_token_layer"], right] if len(f) else []
        ax.step(fx, [*f["mean"], *f["mean"].iloc[-1:]], where="post",
                color="black", lw=0.7, alpha=0.6, zorder=2, label=FRONTIER_LABEL)
        ax.set_xlim(right=right)
        # 1-2-5 ticks ran together ("5001000") in a panel a fifth of a page wide
        ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1, 3) if len(tasks) > 3 else (1, 2, 5)))
        plain_log_ticks(ax.xaxis)
        # on one line the label is wider than a panel of a row of four or more, and ran into its neighbours'
        ax.set_xlabel(MEM_LABEL.replace(" / layer", "\n/ layer") + " (log)" if len(tasks) > 3 else MEM_LABEL + " (log)")
        ax.set_title(L.task_label(t))
        ax.set_ylim(-2, 105)
    axes[0].set_ylabel(f"{metric} (0-100)\n{interval_note(s['n'])}")
    legend(axes[-1], max_right=0, ncol=3, axes=axes[:-1], last=(GREY_LABEL, FRONTIER_LABEL))
    fig.suptitle(title or f"Accuracy vs GPU memory ({model_title(df)})")
    return fig


def _one_bar_per_budget_family(df, b, methods: list, names: dict) -> tuple[list, dict]:
    """A method's budget variants hold the same bytes per prompt token (the budget sizes only a per-step buffer): one
    bar for them all, named after the variant at the preset's own budget (else the first) with "(all budgets)".
    Configs that differ in anything but the budget, or whose bars differ, keep their own bars."""
    import json

    cfgs = dict(zip(df["method"], df["config"])) if "config" in df else {}
    bars = b.pivot_table(index="method", columns=["role", "category"], values="B_per_token_layer", aggfunc="median")
    bars = bars.reindex(methods).fillna(0.0)
    families: dict[str, list] = {}
    for m in methods:
        cfg = L.config_dict(cfgs.get(m))
        key = m if cfg is None else json.dumps({k: v for k, v in cfg.items() if k not in ("sparse_budget", "name")},
                                               sort_keys=True, default=str)
        families.setdefault(key, []).append(m)
    kept, out = [], dict(names)
    for members in families.values():
        same = [m for m in members if np.allclose(bars.loc[m], bars.loc[members[0]], rtol=0.005, atol=0.5)]
        rest = [m for m in members if m not in same]
        kept.extend(rest)
        if len(same) == 1:
            kept.append(same[0])
            continue
        own = [m for m in same if "sparse_budget" not in L.nearest_preset(cfgs[m])[1]]
        head = (own or same)[0]
        kept.append(head)
        out[head] = f"{names.get(head, head)} (all budgets)" if own else f"{names.get(head, head)} and its budgets"
    return [m for m in methods if m in kept], out


def memory_breakdown(df: pd.DataFrame, title: str | None = None):
    """Stacked bars of bytes/token/layer per method by storage category (one fixed colour per category in every
    figure): GPU-resident solid, offloaded hatched beside it."""
    b = A.memory_breakdown(df)
    if b.empty:
        return empty("no memory categories in these results")
    methods, names = _one_bar_per_budget_family(df, b, A.method_order(b["method"]), L.method_labels(df))
    cats = list(dict.fromkeys(b["category"]))
    fig, ax = figure("page" if len(methods) > 4 else "column", 2.8)
    x = np.arange(len(methods))
    seen = set()
    for role, off, hatch in (("device", -0.2, None), ("offloaded", 0.2, "//")):
        bottom = np.zeros(len(methods))
        for c in cats:
            v = b[(b["role"] == role) & (b["category"] == c)].groupby("method")["B_per_token_layer"].median().reindex(methods).fillna(0).to_numpy()
            if v.any():
                ax.bar(x + off, v, 0.38, bottom=bottom, color=L.category_color(c), hatch=hatch, edgecolor="white", lw=0.3,
                       label=None if c in seen else L.category_label(c))
                seen.add(c)
                bottom += v
    ax.set_xticks(x, [names.get(m, m) for m in methods], rotation=30, ha="right", fontsize=6)
    ax.set_ylabel("bytes / prompt token / layer")
    ax.bar([0], [0], color="white", edgecolor="grey", label="solid: GPU")
    ax.bar([0], [0], color="white", edgecolor="grey", hatch="//", label="hatched: offloaded")
    legend(ax, max_right=12, ncol=4)
    ax.set_title(title or f"Memory by category ({model_title(df)})")
    return fig
