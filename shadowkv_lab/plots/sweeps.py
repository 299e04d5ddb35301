"""Ablation figures: score along one config axis (key representation, landmark bits, chunk size, residual
landmarks, sparse budget), one line per task, full attention dashed."""

from __future__ import annotations

import json

import matplotlib.ticker
import numpy as np
import pandas as pd

from .. import analysis as A
from ..cache.config import OffloadConfig
from ..cache.presets import PRESETS
from . import labels as L
from .style import empty, figure, interval_note, legend, model_title, panels, plain_log_ticks, sample_dots, yerr

SCORE_LABEL = "score (0-100)"


def _full_summary(df, metric):
    return A.summary(df[df["method"] == "full"], metric) if "full" in set(df["method"]) else None


def _full_line(ax, s_full: pd.DataFrame, task, color):
    """Dashed horizontal line at full attention's mean score for `task` (the accuracy ceiling); one legend entry
    for all tasks."""
    v = s_full[s_full["task"] == task]["mean"]
    if len(v) and np.isfinite(v.iloc[0]):
        ax.axhline(v.iloc[0], color=color, ls="--", lw=0.8, alpha=0.8, label="dashed: full attention")


def _score_axis(ax, s):
    ax.set_ylabel(f"{SCORE_LABEL}\n{interval_note(s['n'])}")
    ax.set_ylim(-2, 105)


def _sweep_plot(s: pd.DataFrame, x: str, xlabel: str, s_full: pd.DataFrame | None, title: str, logx2: bool = False):
    """One line per task of mean score (+- CI from 5 samples on) against config column x; full attention dashed."""
    fig, ax = figure("column", 2.6)
    colors = L.task_colors(s["task"])
    for t, g in s.groupby("task", sort=False):
        g = g.dropna(subset=[x]).sort_values(x)
        ax.errorbar(g[x], g["mean"], yerr=yerr(g["mean"], g["ci95"]), marker="o", capsize=2, color=colors[t], label=L.task_label(t))
        sample_dots(ax, g[x], g["values"], g["n"], colors[t])
        if s_full is not None:
            _full_line(ax, s_full, t, colors[t])
    if logx2:
        ax.set_xscale("log", base=2)
        plain_log_ticks(ax.xaxis)
    ax.set_xlabel(xlabel)
    _score_axis(ax, s)
    legend(ax)
    ax.set_title(title)
    return fig


def key_compression(df: pd.DataFrame, methods=None, metric: str = "score", title: str | None = None):
    """Score per key representation: SVD ranks (ascending), then exact keys, then quantized key formats (named by
    bits per dimension), at one budget. Full attention dashed."""
    d = df[df["method"] != "full"] if methods is None else df[df["method"].isin(methods)]
    if d.empty:
        return empty("no key-compression results")
    s = A.summary(d, metric)
    d = d.assign(rank=pd.to_numeric(A.config_field(d, "rank"), errors="coerce"), key_format=A.config_field(d, "key_format"),
                 key_bits=pd.to_numeric(A.config_field(d, "key_bits"), errors="coerce"),
                 key_offset=A.config_field(d, "key_offset").fillna("none"))
    info = d.groupby("method", sort=False).agg(rank=("rank", "first"), key_format=("key_format", "first"),
                                               key_bits=("key_bits", "median"), key_offset=("key_offset", "first"))

    def order(m):
        r = info.loc[m]
        if 0 < r["rank"] < 1:  # a share of H*d (rank scaled to the model)
            return (0, 0, r["rank"])
        if r["rank"] > 0:
            return (0, 1, r["rank"])
        return (1, 0, -(r["key_bits"] if np.isfinite(r["key_bits"]) else 99), r["key_offset"] != "none")

    def label(m):
        r = info.loc[m]
        if 0 < r["rank"] < 1:
            return f"rank\n{100 * r['rank']:.3g}% H·d"
        if r["rank"] > 0:
            return f"rank\n{int(r['rank'])}"
        if r["key_format"] in (None, "native"):
            return "exact"
        name = L.format_name(r["key_format"]).replace(" ", "\n", 1)
        name += f"\n({r['key_bits']:.3g})" if np.isfinite(r["key_bits"]) else ""
        return name + ("\ncentred" if r["key_offset"] != "none" else "")

    ms = sorted(info.index, key=order)
    xi = {m: i for i, m in enumerate(ms)}
    fig, ax = figure("page" if len(ms) > 6 else "column", 2.6)
    colors = L.task_colors(s["task"])
    s_full = _full_summary(df, metric)
    for t, g in s.groupby("task", sort=False):
        g = g[g["method"].isin(ms)].assign(x=lambda v: v["method"].map(xi)).sort_values("x")
        ax.errorbar(g["x"], g["mean"], yerr=yerr(g["mean"], g["ci95"]), marker="o", capsize=2, color=colors[t], label=L.task_label(t))
        sample_dots(ax, g["x"], g["values"], g["n"], colors[t])
        if s_full is not None:
            _full_line(ax, s_full, t, colors[t])
    ax.set_xticks(range(len(ms)), [label(m) for m in ms], fontsize=6)
    ax.set_xlim(-0.5, len(ms) - 0.5)
    ax.set_xlabel("keys: SVD rank | stored (bits/dim with scales)")
    _score_axis(ax, s)
    legend(ax)
    ax.set_title(title or f"Key compression ({model_title(df)})")
    return fig


# Landmark formats by family: HIGGS widths joined by a line (one quantizer at several bit widths), the others single
# points with markers of their own, so no line runs between unrelated formats and no text label sits on the data.
FAMILY_MARKERS = {"HIGGS": "o", "NVFP4": "s", "FP8": "^", "bf16": "D", "residual": "*"}


def _landmark_formats(ax, df: pd.DataFrame, s_full: pd.DataFrame | None, metric: str) -> pd.DataFrame:
    """Draw score against landmark bits/dim (incl. scales) on ax: colour per task, marker per format family, HIGGS
    widths joined; full attention dashed. Returns the summary (one row per task x method) with landmark_format and
    family columns; the legend entries of tasks and full attention are on ax, those of families are the caller's."""
    fmt = A.config_field(df, "landmark_format").astype(str)
    s = A.sweep(df.assign(landmark_format=fmt), "landmark_bits", metric)
    info = df.assign(landmark_format=fmt).groupby("method")["landmark_format"].first()
    s = s.assign(landmark_format=s["method"].map(info))
    s = s.assign(family=s["landmark_format"].map(lambda f: L.format_name(f).split(" ")[0]))
    colors = L.task_colors(s["task"])
    for t, g in s.groupby("task", sort=False):
        g = g.dropna(subset=["landmark_bits"]).sort_values("landmark_bits")
        for fam, h in g.groupby("family", sort=False):
            star = fam == "residual"
            ax.errorbar(h["landmark_bits"], h["mean"], yerr=yerr(h["mean"], h["ci95"]), marker=FAMILY_MARKERS.get(fam, "o"),
                        ls="-" if fam == "HIGGS" and len(h) > 1 else "none", capsize=2, color=colors[t],
                        ms=9 if star else None, mec="black" if star else None, mew=0.5 if star else None)
        sample_dots(ax, g["landmark_bits"], g["values"], g["n"], colors[t])
        ax.plot([], [], color=colors[t], lw=4, label=L.task_label(t))  # tasks by colour
        if s_full is not None:
            _full_line(ax, s_full, t, colors[t])
    ax.set_xscale("log", base=2)
    plain_log_ticks(ax.xaxis)
    ax.set_xlabel("landmark bits / dimension (incl. scales)")
    _score_axis(ax, s)
    return s


def _family_entry(ax, s: pd.DataFrame, fam: str, note: str = "") -> None:
    """One legend entry per format family: its marker (and line for HIGGS) and its nominal widths."""
    widths = sorted({L.format_name(f).split(" ", 1)[1].removesuffix("-bit") for f in s.loc[s["family"] == fam, "landmark_format"]},
                    key=lambda w: float(w.split("+")[0]))
    star = fam == "residual"
    ax.plot([], [], marker=FAMILY_MARKERS.get(fam, "o"), ls="-" if fam == "HIGGS" and len(widths) > 1 else "none",
            color="white" if star else "#444444", mec="black" if star else None, mew=0.5 if star else None,
            ms=9 if star else None, label=f"{fam} {', '.join(widths)}-bit{note}")


def landmark_precision(df: pd.DataFrame, methods=None, metric: str = "score", title: str | None = None):
    """Score against landmark bits per dimension (including scales), colour per task and marker per format family
    (named in the legend); HIGGS widths joined by a line. Full attention dashed."""
    d = df[df["method"] != "full"] if methods is None else df[df["method"].isin(methods)]
    if d.empty:
        return empty("no landmark-precision results")
    fig, ax = figure("column", 2.6)
    s = _landmark_formats(ax, d, _full_summary(df, metric), metric)
    for fam in dict.fromkeys(s.sort_values("landmark_bits")["family"]):
        _family_entry(ax, s, fam)
    legend(ax, ncol=2)
    ax.set_title(title or f"Landmark precision ({model_title(df)})")
    return fig


def chunk_size(df: pd.DataFrame, methods=None, metric: str = "score", title: str | None = None):
    """Score against landmark chunk size (tokens per landmark), one line per task."""
    d = df[df["method"] != "full"] if methods is None else df[df["method"].isin(methods)]
    if d.empty:
        return empty("no chunk-size results")
    s = A.sweep(d, "chunk_size", metric)
    return _sweep_plot(s, "chunk_size", "chunk size (tokens per landmark)", _full_summary(df, metric),
                       title or f"Landmark chunk size ({model_title(df)})", logx2=True)


def residual_saving(plain: pd.DataFrame, residual_bits: float, reference: str = "higgs-4-256") -> tuple[float, float] | None:
    """(saving in %, reference bits) of a residual landmark against the plain landmark of format `reference`
    (2-bit HIGGS) in the same sweep, by exact bits per dimension including scales; None without that point."""
    ref = plain[plain["landmark_format"] == reference]
    if ref.empty:
        return None
    b = float(ref["landmark_bits"].iloc[0])
    return 100 * (1 - residual_bits / b), b


def residual_landmarks(df: pd.DataFrame, methods=None, metric: str = "score", title: str | None = None):
    """Score against landmark bits/dim; residual landmarks (meta-landmark + low-bit residual) starred beside the plain
    formats (marker per family, HIGGS widths joined), the star's legend entry with its landmark memory saving against
    plain 2-bit HIGGS landmarks (exact bits per dimension with scales on both sides)."""
    d = df[df["method"] != "full"] if methods is None else df[df["method"].isin(methods)]
    if d.empty:
        return empty("no residual-landmark results")
    fig, ax = figure("column", 2.6)
    s = _landmark_formats(ax, d, _full_summary(df, metric), metric)
    plain = s[s["family"] != "residual"]
    for fam in dict.fromkeys(s.sort_values("landmark_bits")["family"]):
        note = ""
        if fam == "residual":
            r = s[s["family"] == fam].iloc[0]
            sv = residual_saving(plain, r["landmark_bits"])
            note = f" ({r['landmark_bits']:.3g} b/dim,\n{sv[0]:.0f}% fewer than HIGGS 2-bit's {sv[1]:.3g})" if sv is not None else ""
        _family_entry(ax, s, fam, note)
    bits = sorted(s["landmark_bits"].dropna().unique())
    # every measured width (the star sits between plain formats); a label within 0.12 octave of the last one kept
    # is left blank (the legend names the formats)
    labels, last = [], None
    for b in bits:
        show = last is None or np.log2(b / last) >= 0.12
        labels.append(f"{b:.3g}" if show else "")
        last = b if show else last
    ax.set_xticks(bits, labels)
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    if len(bits) > 1 and np.diff(np.log2(bits)).min() < 0.4:  # neighbours closer than their labels are wide
        ax.tick_params(axis="x", labelrotation=60, labelsize=6)
    legend(ax, ncol=2)
    ax.set_title(title or f"Residual landmarks ({model_title(df)})")
    return fig


def _family(config) -> str:
    """A config's identity without its sparse budget (budget variants of one method share it)."""
    c = json.loads(config) if isinstance(config, str) else dict(config or {})
    c = OffloadConfig.from_dict(c).to_dict()  # defaults filled in: rows stored before a field existed still match
    return json.dumps({k: v for k, v in c.items() if k not in ("name", "sparse_budget")}, sort_keys=True)


def budget_sweep(df: pd.DataFrame, families=("shadowkv", "yakv"), metric: str = "score", title: str | None = None):
    """Score against the sparse budget (tokens actually selected), one line per method family (a config and its
    budget variants; families: preset names or configs) per task: does a bigger budget rescue ShadowKV?"""
    if "config" not in df or df.empty:
        return empty("no budget-sweep results")
    fams = {}
    for f in families:
        if isinstance(f, str) and f not in PRESETS and (df["method"] == f).any():  # a method of these rows
            cfg = json.loads(df.loc[df["method"] == f, "config"].iloc[0])
        else:
            cfg = PRESETS[f].to_dict() if isinstance(f, str) else f.to_dict()
        fams[_family(cfg)] = cfg
    d = df.assign(family=df["config"].map(_family))
    d = d[d["family"].isin(fams)]
    if d.empty:
        return empty("no budget-sweep results")
    d = d.assign(budget_tokens=pd.to_numeric(A.config_field(d, "budget_tokens"), errors="coerce"))
    tasks = list(dict.fromkeys(d["task"]))
    fig, axes = panels(len(tasks), 2.6)
    s_full = _full_summary(df, metric)
    n_all = []
    for ax, t in zip(axes, tasks):
        for i, (fam, cfg) in enumerate(fams.items()):
            g = d[(d["task"] == t) & (d["family"] == fam)]
            if g.empty:
                continue
            s = A.summary(g, metric).merge(g.groupby("method")["budget_tokens"].median().reset_index(), on="method").sort_values("budget_tokens")
            n_all += list(s["n"])
            ax.errorbar(s["budget_tokens"], s["mean"], yerr=yerr(s["mean"], s["ci95"]), marker=L.MARKERS[i], capsize=2,
                        color=L.method_color(cfg.get("name", ""), cfg), label=L.config_label(cfg))
        if s_full is not None:
            _full_line(ax, s_full, t, "black")
        ax.set_xscale("log", base=2)
        plain_log_ticks(ax.xaxis)
        ax.set_xlabel("sparse budget (selected tokens / KV head)")
        ax.set_title(L.task_label(t))
    _score_axis(axes[0], pd.DataFrame({"n": n_all}))
    legend(axes[-1])
    fig.suptitle(title or f"Sparse budget ({model_title(df)})")
    return fig
