"""Speed figures: the GPU benchmarks' decode step, capacity and landmark scoring cost, and the runner's own decode
speed."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import analysis as A
from ..results import STEP_PHASES
from . import labels as L
from .style import empty, figure, legend, panels, plain_log_ticks

SPEED = {  # benchmark -> (table, metric, y label) that decode_speed draws
    "bench_decode_step": ("steps", "tok_s_layer", "tokens/s of one layer (1 / step)"),
    "bench_e2e": ("e2e", "tok_s", "decode tokens / s"),
}


def decode_speed(bench: pd.DataFrame, source: str = "benchmarks/results", title: str | None = None,
                 benchmark: str = "bench_decode_step", run: str | None = None):
    """Decode throughput against context length, one line per method (dashed: without reuse of the previous step's
    rows, variant 'nocache'), one panel per batch size (the first four), from one run of a speed benchmark's rows
    (analysis.load_benchmarks; unless `run` names one, the newest of the runs that cover the most (context, batch)
    settings: a spot check at one setting does not hide the last sweep). benchmark: 'bench_decode_step' (one layer's
    step at Llama-3.1-8B shapes, tokens/s per layer) or 'bench_e2e' (a real model's decode). Without rows, a figure
    that says so."""
    if benchmark not in SPEED:
        raise ValueError(f"benchmark={benchmark!r}; allowed: {sorted(SPEED)}")
    table, metric, ylabel = SPEED[benchmark]
    if run is None:
        run = _widest_run(bench, benchmark, table, metric)
    b = A.newest_run(bench, benchmark, table, run)
    b = b[(b["metric"] == metric) & b["context"].notna() & b["batch"].notna()] if len(b) else b
    if b.empty:
        return empty(f"No GPU decode benchmark results found in {source} (*.rows.csv with {benchmark} rows).\nRun the "
                     "GPU decode benchmark (benchmarks/README.md) to fill this figure.")
    batches = sorted(int(x) for x in b["batch"].unique())[:4]
    fig, axes = panels(len(batches), 2.6, sharey=False)
    for ax, bs in zip(axes, batches):
        for i, ((meth, var), g) in enumerate(b[b["batch"] == bs].groupby(["method", "variant"], sort=False)):
            gg = g.groupby("context")["value"].median().sort_index()
            label = meth + {"nocache": ", no row reuse", "cache": "", "": ""}.get(var, f", {var}")
            ax.plot(gg.index.astype(float), gg.values, "--" if var == "nocache" else "-", marker=L.MARKERS[i % len(L.MARKERS)],
                    color=L.method_color(meth), label=label)
        ax.set_xscale("log", base=2)
        plain_log_ticks(ax.xaxis)
        ax.set_xlabel("context length (tokens)")
        ax.set_yscale("log")
        ax.set_title(f"batch {bs}")
    axes[0].set_ylabel(ylabel)
    legend(axes[-1])
    fig.suptitle(title or f"Decode speed, {b['device_name'].iloc[0]} ({_run_label(b['run'].iloc[0], benchmark)})")
    return fig



def _run_label(run: str, benchmark: str) -> str:
    """A run's name for a title: a script's runs are named benchmark-device-time, the time alone says which."""
    return run.split("-")[-1] if run.startswith(benchmark + "-") else run


def _widest_run(bench: pd.DataFrame, benchmark: str, table: str, metric: str) -> str | None:
    """Of a benchmark's runs, the newest of those with the most distinct (context, batch) settings; None without rows."""
    if bench is None or bench.empty:
        return None
    b = bench[(bench["benchmark"] == benchmark) & (bench["table"] == table) & (bench["metric"] == metric)]
    if b.empty:
        return None
    b = b.assign(ts=pd.to_datetime(b["timestamp"], utc=True, format="ISO8601"), setting=list(zip(b["context"], b["batch"])))
    cover = b.groupby("run").agg(n=("setting", "nunique"), ts=("ts", "max"))
    return cover.sort_values(["n", "ts"], kind="stable").index[-1]


def capacity(bench: pd.DataFrame, title: str | None = None, run: str | None = None):
    """Largest batch that fits the memory cap per method (metric max_batch), and the estimated decode tokens/s at
    that batch per step-benchmark method (metric tok_s; hatched: without row reuse), from one bench_capacity.py run
    (the newest unless `run` names one). ShadowKV's own headline is up to 6x the batch of full attention."""
    b = A.newest_run(bench, "bench_capacity", "capacity", run)
    mb = b[b["metric"] == "max_batch"] if len(b) else b
    if mb.empty:
        return empty("No capacity benchmark results (bench_capacity rows) found.")
    est = b[b["metric"] == "tok_s"]
    fig, (ax, ax2) = figure("page", 2.6, 1, 2)
    x = np.arange(len(mb))
    ax.bar(x, mb["value"], color=[L.method_color(m) for m in mb["method"]])
    ax.set_xticks(x, [L.method_label(m) for m in mb["method"]], rotation=20, ha="right")
    ctx = mb["context"].dropna()
    ax.set_ylabel(f"largest batch at {int(ctx.iloc[0]):,} tokens" if len(ctx) else "largest batch")
    for i, v in enumerate(mb["value"]):
        ax.annotate(f"{int(v)}", (i, v), ha="center", va="bottom", fontsize=6)
    ax2.barh(range(len(est)), est["value"], color=[L.method_color(m) for m in est["method"]], edgecolor="white")
    for i, var in enumerate(est["variant"]):
        if var == "nocache":
            ax2.patches[i].set_hatch("//")
    ax2.set_yticks(range(len(est)), [m + (", no reuse" if v == "nocache" else "") for m, v in zip(est["method"], est["variant"])],
                   fontsize=6)
    ax2.invert_yaxis()
    ax2.set_xlabel("est. decode tokens / s at that batch")
    fig.suptitle(title or "Capacity under the GPU memory cap (from the step benchmark)")
    return fig



PHASE_COLORS = dict(zip(STEP_PHASES, ("#4C72B0", "#DD8452", "#8172B3", "#55A868", "#C44E52")))


def step_phases(bench: pd.DataFrame, context: int | None = None, batch: int | None = None, title: str | None = None,
                run: str | None = None):
    """Where an offloaded decode step's time goes, one bar per method (and 'no row reuse' variant): its phases timed
    eagerly (bench_decode_step.py --phases: score the landmarks, select the top-k, update the resident rows, fetch the
    selected rows, attend), stacked; a black tick marks the step replayed from its CUDA graph and a grey one the
    step's bytes bound. At one context and batch (default: the largest measured) of one run (the newest with phase
    rows unless `run` names one). Without phase rows, a figure that says so."""
    p = A.newest_run(bench, "bench_decode_step", "step_phases", run)
    if p.empty:
        return empty("No decode-step phase rows (bench_decode_step.py --phases writes them) found.")
    run = p["run"].iloc[0]
    context = int(p["context"].max()) if context is None else context
    batch = int(p[p["context"] == context]["batch"].max()) if batch is None else batch
    p = p[(p["context"] == context) & (p["batch"] == batch)]
    if p.empty:
        raise ValueError(f"context={context}, batch={batch}: run {run} has no phase rows there")
    p = p.assign(cache=p["variant"].str.split("/").str[0], phase=p["variant"].str.split("/").str[1])
    steps = A.newest_run(bench, "bench_decode_step", "steps", run)
    steps = steps[(steps["context"] == context) & (steps["batch"] == batch)]
    bars = list(dict.fromkeys(zip(p["method"], p["cache"])))
    fig, ax = figure("page", 0.3 * len(bars) + 1.0)
    for i, (meth, cache) in enumerate(bars):
        g = p[(p["method"] == meth) & (p["cache"] == cache)].set_index("phase")["value"]
        left = 0.0
        for ph in STEP_PHASES:
            w = float(g.get(ph, 0.0))
            ax.barh(i, w, left=left, color=PHASE_COLORS[ph], edgecolor="white", linewidth=0.4,
                    label=ph if i == 0 else None)
            left += w
        s = steps[(steps["method"] == meth) & (steps["variant"] == cache)].set_index("metric")["value"]
        for metric, color, name in (("step_ms", "black", "replayed step (CUDA graph)"), ("bound_ms", "0.55", "bytes bound")):
            if metric in s:
                ax.plot([s[metric]] * 2, [i - 0.42, i + 0.42], color=color, lw=1.6, label=name if i == 0 else None)
    ax.set_yticks(range(len(bars)), [m + (", no row reuse" if c == "nocache" else "") for m, c in bars])
    ax.invert_yaxis()
    ax.set_xlabel("ms per decode step, one layer (phases timed eagerly)")
    ax.set_xlim(0, None)
    legend(ax)
    dev = p["device_name"].iloc[0]
    fig.suptitle(title or f"Where an offloaded decode step goes: {context:,} tokens, batch {batch}\n"
                          f"{dev} ({_run_label(run, 'bench_decode_step')})")
    return fig


def landmark_scoring(bench: pd.DataFrame, title: str | None = None, run: str | None = None):
    """Cost per landmark of the fused scoring kernel by landmark format and selection rule, from the newest
    bench_decode_step.py run with scoring rows (analysis.scoring_rows; the newest unless `run` names one), and, when
    that run holds a sweep (--sweep-scoring), every tile / warps / kept-logits configuration beside it. The price of landmark
    precision at decode time: the study's HIGGS landmarks are 7x smaller than bf16 ones."""
    s = A.scoring_rows(bench, run)
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
    src, dev = _run_label(s["run"].iloc[0], "bench_decode_step"), s["device_name"].iloc[0]
    fig.suptitle(title or f"Landmark scoring cost\n{dev} ({src})".strip())
    return fig



def cpu_decode_speed(df: pd.DataFrame, title: str | None = None):
    """Per-row decode tokens/s by method as the runner stored it (decode_tok_s: a row's tokens over the time of the
    decode calls it ran in; the rows of a batch share each step, so the rate says as much about the batch as about the
    method), mean and 95% CI over rows, one horizontal bar per method so that long config names stay readable. The
    machine the results were made on decides the numbers: on a CPU they are the simulation's speed, not a serving
    number; a grid's aggregate rate is in the runner benchmark (benchmarks/README.md)."""
    if "decode_tok_s" not in df or df["decode_tok_s"].dropna().empty:
        return empty("no decode_tok_s in these results")
    s = A.summary(df, "decode_tok_s", by=("method",))
    label, color = L.styler(df)
    fig, ax = figure("page" if len(s) > 5 else "column", 0.9 + 0.16 * len(s))
    y = np.arange(len(s))
    ax.barh(y, s["mean"], xerr=s["ci95"].fillna(0), color=[color(m) for m in s["method"]], capsize=2)
    ax.set_yticks(y, [label(m) for m in s["method"]], fontsize=6)
    ax.invert_yaxis()
    ax.set_xlim(0, None)
    ax.set_xlabel("decode tokens/s per row (mean, 95% CI; batched rows share a step)")
    ax.set_title(title or "Decode speed of the stored rows, by method")
    return fig
