"""Paper-sized figures and how they are saved.

Every figure is one column (3.25 in) or one page (6.75 in) wide at 8 pt text, laid out by matplotlib's constrained
layout (no tight-bbox cropping, so the saved size is the size asked for). `save` writes PDF (TrueType / Type 42
fonts) and PNG, stamped with the run that made it: profile, model, n and commit in the PDF / PNG metadata and in a
small footer ("smoke test" when n is below analysis.MIN_N_CI).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np

from ..analysis.stats import MIN_N_CI

COLUMN = 3.25  # single-column width, inches
PAGE = 6.75  # double-column width, inches
FOOTER_PT = 5.5
FOOTER_STRIP_PT = FOOTER_PT + 9  # the height the stamp's line takes at the bottom of a figure

# Type 42 (TrueType) fonts in PDF/PS: editable text and accepted by publishers (Type 3 is not).
RC = {
    "pdf.fonttype": 42, "ps.fonttype": 42, "savefig.bbox": None, "savefig.dpi": 300, "figure.dpi": 100,
    "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3, "grid.linewidth": 0.5,
    "font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "xtick.labelsize": 7, "ytick.labelsize": 7,
    "legend.fontsize": 7, "legend.frameon": False, "figure.titlesize": 9, "lines.linewidth": 1.2, "lines.markersize": 4,
    "figure.constrained_layout.use": True,  # suptitles, legends and long tick labels never overlap
}
matplotlib.rcParams.update(RC)


def figure(width: str = "column", height: float = 2.4, nrows: int = 1, ncols: int = 1, **kw):
    """(fig, axes) at a paper width ('column' 3.25 in or 'page' 6.75 in); axes squeezed like plt.subplots."""
    w = {"column": COLUMN, "page": PAGE}[width]
    return plt.subplots(nrows, ncols, figsize=(w, height), **kw)


def panels(n: int, height: float = 2.4, sharey=True):
    """A row of n panels: one column wide for a single panel, one page wide for several."""
    fig, axes = figure("column" if n <= 1 else "page", height, 1, max(n, 1), sharey=sharey, squeeze=False)
    return fig, axes[0]


def empty(message: str, width: str = "column"):
    """A figure that says why it has no data (notebooks show it instead of failing)."""
    fig, ax = figure(width, 1.4)
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True, fontsize=8)
    return fig


def yerr(mean, ci, lo: float = 0.0, hi: float = 100.0):
    """Asymmetric error bars of a 95% interval clipped to the metric range; no bar where there is no interval
    (NaN: fewer than MIN_N_CI samples)."""
    m = np.asarray(mean, float)
    c = np.asarray(ci, float)
    if not np.isfinite(c).any():
        return None  # no caps either
    c = np.nan_to_num(c, nan=0.0)
    return np.vstack([np.clip(np.minimum(c, m - lo), 0, None), np.clip(np.minimum(c, hi - m), 0, None)])


def sample_dots(ax, xs, values, ns, color):
    """Each sample's value as a small open dot at its x, for the points that have no interval (n < MIN_N_CI)."""
    for x, v, n in zip(xs, values, ns):
        if n < MIN_N_CI and isinstance(v, tuple) and len(v) > 1:
            ax.scatter(np.full(len(v), x), v, s=6, facecolor="white", edgecolor=color, lw=0.6, zorder=3)


def interval_note(n) -> str:
    """Axis-label suffix saying what the bars are: 'mean ± 95% CI', or 'mean, no CI (n < 5)'."""
    n = np.asarray(n, float)
    if len(n) and np.nanmin(n) >= MIN_N_CI:
        return "mean ± 95% CI"
    return f"mean, dots: samples (n < {MIN_N_CI})"


def legend(ax, max_right: int = 6, ncol: int = 2, axes=(), last=()):
    """Legend without duplicate labels: beside the axes when short, below the figure when long. axes: more axes whose
    labelled artists join it (panels that each show some of the entries); last: labels put after the others."""
    uniq = {}
    for a in [*axes, ax]:
        h, labels = a.get_legend_handles_labels()
        uniq.update(zip(labels, h))
    uniq = dict(sorted(uniq.items(), key=lambda kv: kv[0] in last))
    if not uniq:
        return
    if len(uniq) <= max_right and ax.figure.get_figwidth() > COLUMN + 0.1:
        ax.legend(uniq.values(), uniq.keys(), loc="upper left", bbox_to_anchor=(1.01, 1.0))
    else:  # below the figure, as many columns as the longest label allows; the figure grows by the legend's rows
        fig = ax.figure
        longest = max(len(line) for k in uniq for line in str(k).split("\n"))
        fit = max(1, int(fig.get_figwidth() * 72 / (7 * 0.55 * longest + 24)))
        cols = max(1, min(ncol, fit, len(uniq)))
        lines = sum(max(str(k).count("\n") + 1 for k in list(uniq)[i:i + cols]) for i in range(0, len(uniq), cols))
        fig.set_figheight(fig.get_figheight() + lines * 7 * 1.25 / 72 + 0.1 + FOOTER_STRIP_PT / 72)
        size = matplotlib.font_manager.FontProperties(size=matplotlib.rcParams["legend.fontsize"]).get_size_in_points()
        # the layout reserves the legend's box above its rect but draws the legend from the figure's edge: the pad
        # lifts it onto its reserved box, and the rect keeps the stamp's line free whether or not one is added
        fig.legend(uniq.values(), uniq.keys(), loc="outside lower center", ncol=cols,
                   borderaxespad=FOOTER_STRIP_PT / size)
        _reserve_footer_strip(fig)


def plain_log_ticks(axis):
    """Log axis with plain numbers (64, 128, 1024) instead of 2x10^2."""
    axis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(matplotlib.ticker.NullFormatter())


def model_title(df) -> str:
    models = list(dict.fromkeys(df["model"])) if "model" in df else []
    return ", ".join(map(str, models))


# ---------------------------------------------------------------------------------------------- stamping
@dataclasses.dataclass(frozen=True)
class Stamp:
    """What made a figure: the run_all profile, the model, samples per cell (n: the fewest; n_max: the most, when
    the figure's cells differ) and the commit."""

    profile: str = "custom"
    model: str = ""
    n: int | None = None
    commit: str | None = None
    n_max: int | None = None

    @property
    def ranged(self) -> bool:
        """The figure's cells hold different numbers of samples (n to n_max)."""
        return self.n is not None and self.n_max is not None and self.n_max > self.n

    @property
    def smoke(self) -> bool:
        return self.n is not None and self.n < MIN_N_CI

    def footer(self) -> str:
        parts = [f"{self.profile} profile" + (" · smoke test" if self.smoke else "")]
        parts += [self.model] if self.model else []
        if self.n is not None:
            parts += [f"n = {self.n} to {self.n_max} per cell" if self.ranged else f"n = {self.n}"]
        if self.commit:  # rows of several commits: each named short enough for a column-wide footer
            commits = self.commit.split("+")
            parts += [f"commit {'+'.join(c[:10 if len(commits) == 1 else 7] for c in commits)}"]
        return " · ".join(parts)

    def keywords(self) -> str:
        n = f"{self.n}-{self.n_max}" if self.ranged else f"{self.n}"
        return f"profile={self.profile}; model={self.model}; n={n}; commit={self.commit}; smoke_test={self.smoke}"


def make_stamp(profile: str = "custom", model: str = "", n: int | None = None, commit: str | None = None) -> Stamp:
    """A Stamp with the checkout's commit filled in (provenance.git_commit) unless given."""
    if commit is None:
        from ..provenance import git_commit

        commit = git_commit()
    return Stamp(profile=str(profile), model=str(model), n=None if n is None else int(n), commit=commit)


def _reserve_footer_strip(fig, lines: int = 1) -> None:
    """The constrained layout keeps the bottom `lines` x FOOTER_STRIP_PT of the figure free for the stamp."""
    strip = lines * FOOTER_STRIP_PT / 72 / fig.get_figheight()
    engine = fig.get_layout_engine()
    if hasattr(engine, "set"):
        engine.set(rect=(0, strip, 1, 1 - strip))


FOOTER_CHAR_EM = 0.6  # a generous mean glyph width of the sans-serif footer font, in ems


def _footer_lines(text: str, width_in: float) -> str:
    """The footer broken at its " · " separators into lines that fit `width_in` inches (a column-wide figure
    stamped with several commits does not fit one line, and a cut stamp names no commit)."""
    fits = int(width_in * 72 / (FOOTER_CHAR_EM * FOOTER_PT))
    lines = [""]
    for part in text.split(" · "):
        joined = f"{lines[-1]} · {part}" if lines[-1] else part
        if len(joined) <= fits or not lines[-1]:
            lines[-1] = joined
        else:
            lines.append(part)
    return "\n".join(lines)


def _add_footer(fig, text: str):
    """The stamp as small lines under everything (the constrained layout leaves room for them)."""
    text = _footer_lines(text, fig.get_figwidth())
    lines = text.count("\n") + 1
    if lines > 1:  # the figure grows by the extra lines, and a legend below the axes rises onto its reserved box
        extra = (lines - 1) * FOOTER_STRIP_PT
        fig.set_figheight(fig.get_figheight() + extra / 72)
        for leg in fig.legends:
            leg.borderaxespad += extra / leg.prop.get_size_in_points()
    _reserve_footer_strip(fig, lines)
    return fig.text(0.005, 0.003, text, fontsize=FOOTER_PT, color="#555555", ha="left", va="bottom")


def save(fig, name: str, outdir="figures", stamp: Stamp | None = None, formats=("pdf", "png")) -> list[Path]:
    """Write `fig` as outdir/name.pdf and outdir/name.png (fonts embedded as Type 42); with a stamp, its footer on
    the figure and its fields in the files' metadata. Returns the paths."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    if stamp is not None and not getattr(fig, "_skv_stamped", False):  # one footer, however often it is saved
        _add_footer(fig, stamp.footer())
        fig._skv_stamped = True
    paths = []
    with matplotlib.rc_context(RC):
        for fmt in formats:
            p = outdir / f"{name}.{fmt}"
            meta = {"Title": name}
            if stamp is not None:
                meta.update({"Subject": stamp.footer(), "Keywords": stamp.keywords()} if fmt == "pdf"
                            else {"Description": stamp.footer(), "Comment": stamp.keywords()})
            fig.savefig(p, format=fmt, metadata=meta)
            paths.append(p)
    return paths


def show(fig, name: str, outdir="figures", stamp: Stamp | None = None) -> None:
    """save(), then display the figure inline (in Jupyter), close it and print where it went."""
    paths = save(fig, name, outdir, stamp)
    try:
        from IPython.display import display

        display(fig)
    except ImportError:
        pass
    plt.close(fig)  # displayed once; without close the inline backend would show it again at cell end
    print("saved " + ", ".join(map(str, paths)))


class FigureSaver:
    """Saves a notebook's figures into one folder with one stamp: `figs.show(fig, "01_accuracy")` writes PDF + PNG,
    displays the figure inline (in Jupyter) and closes it."""

    def __init__(self, figures_dir, profile: str = "custom", model: str = "", n: int | None = None, commit: str | None = None):
        self.dir = Path(figures_dir)
        self.stamp = make_stamp(profile, model, n, commit)

    def show(self, fig, name: str) -> None:  # None: a notebook cell ending in figs.show(...) prints no list
        show(fig, name, self.dir, self.stamp)
