"""Speed figures: the GPU benchmarks' decode step, capacity and landmark scoring cost, and the runner's own decode
speed."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import analysis as A
from . import labels as L
from .style import empty, figure, legend, panels, plain_log_ticks

def decode_speed(bench: pd.DataFrame, source: str = "benchmarks/results", title: str | None = None):
    """Decode throughput against context length, one line per method, one panel per batch size, from the GPU
    benchmarks' JSON rows (analysis.load_benchmarks; decode_step.json's one-layer step times give tokens/s per
    layer). Without benchmark files, a figure that says so."""
    if bench is None or bench.empty:
        return empty(f"No GPU decode benchmark results found in {source}/*.json.\nRun the GPU decode benchmark "
                      "(benchmarks/README.md) to fill this figure.")
    ys = {"tokens_per_s_layer": "decode tokens/s of one layer (1 / step time)", "decode_tok_s": "decode tokens / s",
          "tokens_per_s": "decode tokens / s", "tok_s": "decode tokens / s", "throughput": "decode tokens / s"}
    y = next((c for c in ys if c in bench and bench[c].notna().any()), None)
    if y is None:
        return empty(f"benchmark rows in {source} have no tokens/s column (looked for {', '.join(ys)})")
    b = bench[bench[y].notna()]
    if "table" in b and b["table"].nunique() > 1:  # several tables carry tokens/s: the step benchmark's first
        b = b[b["table"] == ("steps" if (b["table"] == "steps").any() else b["table"].value_counts().index[0])]
    x = next((c for c in ("L", "context", "context_len", "prompt_len", "prompt_tokens", "tokens") if c in b and b[c].notna().any()), None)
    m = next((c for c in ("method", "name", "impl") if c in b), None)
    bcol = next((c for c in ("B", "batch", "batch_size") if c in b and b[c].notna().any()), None)
    b = b.assign(_m=b[m].astype(str) if m else "all", _b=b[bcol] if bcol else "")
    batches = sorted(b["_b"].dropna().unique())[:4]
    fig, axes = panels(len(batches), 2.6, sharey=False)
    for ax, bs in zip(axes, batches):
        g0 = b[b["_b"] == bs]
        for i, (meth, g) in enumerate(g0.groupby("_m", sort=False)):
            style = "--" if "nocache" in meth else "-"
            if x is None:
                ax.bar(i, g[y].median(), color=L.method_color(meth.replace("_nocache", "")), label=meth.replace("_nocache", ", no row reuse"))
                continue
            gg = g.groupby(x)[y].median().sort_index()
            ax.plot(gg.index, gg.values, style, marker=L.MARKERS[i % len(L.MARKERS)], color=L.method_color(meth.split("_")[0]), label=meth.replace("_nocache", ", no row reuse"))
        if x is not None:
            ax.set_xscale("log", base=2)
            plain_log_ticks(ax.xaxis)
            ax.set_xlabel("context length (tokens)")
        ax.set_yscale("log")
        ax.set_title(f"batch {bs:g}" if bcol and isinstance(bs, (int, float)) else (f"batch {bs}" if bcol else ""))
    axes[0].set_ylabel(ys[y])
    legend(axes[-1])
    dev = b["device"].dropna().iloc[0] if "device" in b and b["device"].notna().any() else ""
    fig.suptitle(title or f"Decode speed {dev}".strip())
    return fig



def capacity(bench: pd.DataFrame, title: str | None = None):
    """Largest batch that fits the memory cap per method (and its estimated tokens/s), from the capacity
    benchmark's rows (capacity.json: method, context, max_batch, tokens_per_s[...]). ShadowKV's own headline is
    up to 6x the batch of full attention."""
    if bench is None or bench.empty or "max_batch" not in bench or bench["max_batch"].dropna().empty:
        return empty("No capacity benchmark results (capacity.json) found.")
    b = bench[bench["max_batch"].notna()]
    tps = [c for c in b.columns if c.startswith("tokens_per_s[")]
    fig, (ax, ax2) = figure("page", 2.6, 1, 2)
    x = np.arange(len(b))
    ax.bar(x, b["max_batch"], color=[L.method_color(m) for m in b["method"]])
    ax.set_xticks(x, [L.method_label(m) for m in b["method"]], rotation=20, ha="right")
    ctx = f" at {int(b['context'].iloc[0]):,} tokens" if "context" in b else ""
    ax.set_ylabel(f"largest batch{ctx}")
    for i, v in enumerate(b["max_batch"]):
        ax.annotate(f"{int(v)}", (i, v), ha="center", va="bottom", fontsize=6)
    est = [(c[len("tokens_per_s["):-1], float(v)) for c in tps for v in b[c] if pd.notna(v)]  # (variant, tokens/s)
    ax2.barh(range(len(est)), [v for _, v in est], color=[L.method_color(k.split("_")[0]) for k, _ in est],
             hatch=None, edgecolor="white")
    for i, (k, _) in enumerate(est):
        if "nocache" in k:
            ax2.patches[i].set_hatch("//")
    ax2.set_yticks(range(len(est)), [k for k, _ in est], fontsize=6)
    ax2.invert_yaxis()
    ax2.set_xlabel("est. decode tokens / s at that batch")
    fig.suptitle(title or "Capacity under the GPU memory cap (from the step benchmark)")
    return fig



def landmark_scoring(bench: pd.DataFrame, title: str | None = None):
    """Cost per landmark of the fused scoring kernel by landmark format and selection rule, from the newest
    `scoring` table of the GPU benchmarks (bench_decode_step.py; analysis.scoring_rows), and, when that file holds a
    sweep (--sweep-scoring), every tile / warps / kept-logits configuration beside it. The price of landmark
    precision at decode time: the study's HIGGS landmarks are 7x smaller than bf16 ones."""
    s = A.scoring_rows(bench)
    if s.empty:
        return empty("No landmark scoring benchmark rows (bench_decode_step.py writes them) found.")
    base = s[s["rule"].isin(["softmax_max", "mean_dot"])]
    sweep = s[~s["rule"].isin(["softmax_max", "mean_dot"])].sort_values("ns_per_landmark")
    fig, axes = panels(1 + (not sweep.empty), 2.6, sharey=False)
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
    ax.set_title("default kernels")
    ax.legend()
    if not sweep.empty:
        ax2 = axes[1]
        names = [f"{f} {r.replace('softmax_max ', '')}" for f, r in zip(sweep["landmarks"], sweep["rule"])]
        ax2.barh(range(len(sweep)), sweep["ns_per_landmark"],
                 color=["#4C72B0" if f == "bf16" else "#55A868" for f in sweep["landmarks"]])
        ax2.set_yticks(range(len(sweep)), names, fontsize=7)
        ax2.invert_yaxis()
        ax2.set_xlabel("ns per landmark (softmax-max)")
        ax2.set_title("tile (bm), warps (w), kept logits")
    src = s["source"].iloc[0] if "source" in s else ""
    dev = s["device"].dropna().iloc[0] if "device" in s and s["device"].notna().any() else ""
    fig.suptitle(title or f"Landmark scoring cost {dev} ({src})".strip())
    return fig



def cpu_decode_speed(df: pd.DataFrame, title: str | None = None):
    """Decode tokens/s per method measured by the runner (the machine the results were made on; on CPU this
    is the simulation's speed, not a serving number)."""
    if "decode_tok_s" not in df or df["decode_tok_s"].dropna().empty:
        return empty("no decode_tok_s in these results")
    s = A.summary(df, "decode_tok_s", by=("method",))
    label, color = L.styler(df)
    fig, ax = figure("page" if len(s) > 5 else "column", 2.6)
    ax.bar(range(len(s)), s["mean"], yerr=s["ci95"].fillna(0), color=[color(m) for m in s["method"]], capsize=2)
    ax.set_xticks(range(len(s)), [label(m) for m in s["method"]], rotation=30, ha="right", fontsize=6)
    ax.set_ylabel("decode tokens/s (runner)")
    ax.set_title(title or "Measured decode speed of the results")
    return fig

