"""Every figure function runs on a small synthetic results table and saves PDF (Type 42 fonts) + PNG."""

import json

import matplotlib
import numpy as np
import pandas as pd
import pytest

matplotlib.use("Agg")

from shadowkv_lab import analysis as A  # noqa: E402
from shadowkv_lab import plots  # noqa: E402
from shadowkv_lab.results import STEP_PHASES, bench_row, write_bench_rows  # noqa: E402
from shadowkv_lab.workbook import demo_results  # noqa: E402


@pytest.fixture(scope="module")
def demo():
    return demo_results(n=3)


def _figures(df, rec, tmp_path):
    _, means = A.factorial_attribution(df)
    gold = {f"text2json-{i}": [{"name": "Ann", "k": "1"}, {"name": "Bob", "k": "2"}] for i in range(3)}
    df = df.assign(prediction='[{"name": "Ann", "k": "1"}]')
    errs = A.text2json_field_errors(df, gold, {k: "Ann then Bob" for k in gold})
    write_bench_rows([bench_row(**STAMP, table="steps", method=m, variant=v, context=c, batch=b, metric="tok_s_layer", value=b * 1e3 / c ** 0.5)
                      for m, v in (("full", ""), ("yakv", "cache"), ("yakv", "nocache")) for c in (4096, 16384, 65536) for b in (1, 8)],
                     tmp_path / "bench" / "steps.rows.csv")
    bench = A.load_benchmarks(tmp_path / "bench")
    exact_kv = (df.kind != "full") & (df["rank"] < 0) & (df.key_format == "native") & (df.value_format == "native")
    lm = df[exact_kv & (df.chunk_size == 1)]  # the landmark-precision sweep, selected by config, not by name
    chunks = df[exact_kv & (df.landmark_format == "bf16")]
    skv_budget = df[df.method == "shadowkv"].sparse_budget.iloc[0]
    keys = df[(df.kind != "full") & (df.chunk_size == 8) & (A.config_field(df, "selection") == "landmarks")
              & (df.sparse_budget == skv_budget) & (df.method != "shadowkv")]  # rank and key-format variants
    assert lm.method.nunique() >= 5 and chunks.method.nunique() >= 4 and keys.method.nunique() >= 3
    return {
        "accuracy_by_task": plots.accuracy_by_task(df, methods=["full", "shadowkv", "yakv"]),
        "key_compression": plots.key_compression(pd.concat([keys, df[df.method == "full"]])),
        "landmark_precision": plots.landmark_precision(pd.concat([lm, df[df.method == "full"]])),
        "chunk_size": plots.chunk_size(pd.concat([chunks, df[df.method == "full"]])),
        "residual_landmarks": plots.residual_landmarks(pd.concat([lm, df[df.method == "full"]])),
        "budget_sweep": plots.budget_sweep(df),
        "accuracy_vs_memory": plots.accuracy_vs_memory(df),
        "memory_breakdown": plots.memory_breakdown(df[df.method.isin(["full", "shadowkv", "yakv"])]),
        "error_attribution": plots.error_attribution(means),
        "factorial_cells": plots.factorial_cells(means, task="text2json"),
        "attention_layer": plots.attention_profile(rec, by="layer"),
        "attention_position": plots.attention_profile(rec, by="position"),
        "attention_step": plots.attention_profile(rec, by="step"),
        "depth_profile": plots.depth_profile(df, methods=["full", "shadowkv", "yakv"]),
        "text2json_errors": plots.text2json_errors(errs),
        "errors_by_position": plots.errors_by_position(errs),
        "decode_speed": plots.decode_speed(bench),
        "decode_speed_absent": plots.decode_speed(A.load_benchmarks(tmp_path / "missing")),
        "capacity": plots.capacity(_capacity_bench()),
        "capacity_absent": plots.capacity(bench),
        "cpu_decode_speed": plots.cpu_decode_speed(df),
        "landmark_scoring": plots.landmark_scoring(_scoring_bench(tmp_path)),
        "landmark_scoring_absent": plots.landmark_scoring(bench),
        "step_phases": plots.step_phases(_phases_bench()),
        "step_phases_absent": plots.step_phases(bench),
    }


STAMP = dict(benchmark="bench_decode_step", run="r", device_name="H200", model="m", timestamp="2026-11-29T00:00:00+00:00")


def _capacity_bench():
    st = {**STAMP, "benchmark": "bench_capacity", "table": "capacity", "context": 131072}
    rows = [bench_row(**st, method=m, metric="max_batch", value=b) for m, b in (("full", 3), ("yakv", 29))]
    rows += [bench_row(**st, method=m, variant=v, batch=b, metric="tok_s", value=t)
             for m, v, b, t in (("full", "", 3, 180.0), ("yakv_fp8", "cache", 29, 70.0), ("yakv_fp8", "nocache", 29, 75.0))]
    return pd.DataFrame(rows)


def _phases_bench():
    """One run's step rows and eager phases at two settings (bench_decode_step.py --phases)."""
    rows = []
    for c, b in ((65536, 8), (131072, 32)):
        for m, v in (("yakv_fp8", "cache"), ("yakv_fp8", "nocache")):
            st = dict(**STAMP, method=m, context=c, batch=b)
            rows += [bench_row(**st, table="steps", variant=v, metric=k, value=x) for k, x in (("step_ms", 20.0), ("bound_ms", 2.0))]
            rows += [bench_row(**st, table="step_phases", variant=f"{v}/{ph}", metric="phase_ms", value=i + 1.0)
                     for i, ph in enumerate(STEP_PHASES)]
    return pd.DataFrame(rows)


def test_step_phases_draws_the_largest_setting_and_refuses_an_unmeasured_one():
    fig = plots.step_phases(_phases_bench())
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["yakv_fp8", "yakv_fp8, no row reuse"]
    assert "131,072 tokens, batch 32" in fig._suptitle.get_text()
    widths = [p.get_width() for p in ax.patches[:5]]
    assert widths == [1.0, 2.0, 3.0, 4.0, 5.0]  # score .. attend, stacked in order
    with pytest.raises(ValueError, match="context=4096, batch=1: run r has no phase rows there"):
        plots.step_phases(_phases_bench(), context=4096, batch=1)
    matplotlib.pyplot.close(fig)


def _scoring_bench(tmp_path):
    """Two runs with scoring rows; the newer (by timestamp) holds a sweep row and a top-k row."""
    d = tmp_path / "scoring_bench"
    sc = lambda run, ts, k: [bench_row(**{**STAMP, "run": run, "timestamp": ts}, table="scoring", method=f, variant=r,  # noqa: E731
                                       context=131072, batch=8, metric="ns_per_landmark", value=k * v)
                             for f, v in (("bf16", 0.15), ("higgs2", 0.44)) for r in ("softmax_max", "mean_dot")]
    write_bench_rows(sc("old", "2026-11-28T00:00:00+00:00", 2.0), d / "a_old.rows.csv")
    new = pd.DataFrame(sc("new", "2026-11-29T00:00:00+00:00", 1.0))
    extra = new.iloc[[2, 0]].assign(method=["higgs2", "topk"], variant=["softmax_max bm64 w4 stored", "topk(3.125%)"], value=[0.35, 0.02])
    write_bench_rows(pd.concat([new, extra]), d / "b_new.rows.csv")
    k = {**STAMP, "benchmark": "check_kernels_e2e", "table": "agreement", "context": 8213, "batch": 1, "variant": "seed=7"}
    write_bench_rows([bench_row(**k, method="shadowkv", metric="identical", value=True),
                      bench_row(**k, method="yakv", metric="identical", value=False),
                      bench_row(**k, method="yakv", metric="first_divergence", value=30),
                      bench_row(**k, method="yakv", metric="reference_margin", value=0.0)], d / "kernels_e2e.rows.csv")
    return A.load_benchmarks(d)


def test_scoring_rows_take_the_newest_run_and_kernel_agreement_its_rows(tmp_path):
    b = _scoring_bench(tmp_path)
    s = A.scoring_rows(b)
    assert set(s["run"]) == {"new"} and len(s) == 5  # top-k row dropped
    assert set(A.scoring_rows(b, run="old")["run"]) == {"old"}
    assert s[(s.landmarks == "bf16") & (s.rule == "softmax_max")]["ns_per_landmark"].iloc[0] == pytest.approx(0.15)
    k = A.kernel_agreement(b)
    assert list(k["method"]) == ["shadowkv", "yakv"] and list(k["identical"]) == [True, False]
    assert k.loc[1, "first_divergence"] == 30 and k.loc[1, "seed"] == 7 and k.loc[1, "prompt_tokens"] == 8213
    assert A.scoring_rows(pd.DataFrame()).empty and A.kernel_agreement(pd.DataFrame()).empty


def _outside(fig) -> list[str]:
    """Titles, axis labels, legends and annotations that stick out of the figure (tick labels are left out: the
    ones beyond the view limits exist but are not drawn)."""
    fig.canvas.draw()
    ticks = {id(t) for ax in fig.axes for t in ax.get_xticklabels(which="both") + ax.get_yticklabels(which="both")}
    fb = fig.bbox.padded(2)
    out = []
    for t in fig.findobj(matplotlib.text.Text):
        if id(t) in ticks or not t.get_visible() or not t.get_text().strip():
            continue
        b = t.get_window_extent()
        if b.x0 < fb.x0 or b.x1 > fb.x1 or b.y0 < fb.y0 or b.y1 > fb.y1:
            out.append(t.get_text()[:40])
    return out


def test_every_figure_saves_pdf_type42_and_png(demo, tmp_path):
    df, rec = demo
    figs = _figures(df, rec, tmp_path)
    for name, fig in figs.items():
        assert isinstance(fig, matplotlib.figure.Figure), name
        assert fig.get_figwidth() in (plots.COLUMN, plots.PAGE), f"{name}: {fig.get_figwidth()} in wide, not a paper width"
        assert not _outside(fig), f"{name}: text outside the figure: {_outside(fig)}"
        pdf, png = plots.save(fig, name, tmp_path / "figs")
        assert pdf.suffix == ".pdf" and png.suffix == ".png"
        data = pdf.read_bytes()
        assert data.startswith(b"%PDF") and png.read_bytes()[:4] == b"\x89PNG", name
        assert b"/Type3" not in data, f"{name}: Type 3 fonts in the PDF (pdf.fonttype must be 42)"
        assert b"/FontFile2" in data, f"{name}: no embedded TrueType font"
        matplotlib.pyplot.close(fig)


def test_empty_inputs_give_a_message_figure_not_an_error(tmp_path):
    empty = pd.DataFrame(columns=["model", "task", "sample_id", "method", "score"])
    for fn in (plots.accuracy_by_task, plots.key_compression, plots.landmark_precision, plots.chunk_size, plots.residual_landmarks,
               plots.accuracy_vs_memory, plots.depth_profile, plots.cpu_decode_speed):
        fig = fn(empty)
        assert fig.axes and fig.axes[0].texts, fn.__name__
        matplotlib.pyplot.close(fig)
    fig = plots.landmark_scoring(pd.DataFrame())
    assert "No landmark scoring" in fig.axes[0].texts[0].get_text()
    fig = plots.decode_speed(pd.DataFrame(), source="benchmarks/results")
    assert "No GPU decode benchmark results" in fig.axes[0].texts[0].get_text()
    fig = plots.error_attribution(pd.DataFrame())
    assert fig.axes[0].texts


def test_a_field_described_preset_names_a_changed_chunk_once():
    from shadowkv_lab.cache.presets import chunk_size_ablation, landmark_precision

    assert plots.config_label(chunk_size_ablation(16).to_dict()) == "landmarks bf16 16-bit, chunk 16, exact K/V"
    assert plots.config_label(landmark_precision("fp8").to_dict()) == "landmarks FP8 8-bit, chunk 1, exact K/V"


def test_method_labels_and_colours_come_from_configs_not_names():
    from shadowkv_lab.cache.presets import PRESETS, with_budget

    yakv = PRESETS["yakv"].to_dict()
    assert plots.config_label(yakv) == "YAKV" and plots.method_label("full") == "Full attention"
    budget = with_budget(PRESETS["yakv"], 0.0625).to_dict()
    assert plots.config_label(budget) == "YAKV, budget 6.25%"
    assert plots.method_color("whatever-name", budget) == plots.method_color("yakv") != plots.method_color("full")
    r20 = PRESETS["shadowkv"].replace(name="misleading_name_r99", rank=20).to_dict()
    assert plots.config_label(r20) == "ShadowKV, rank 20"  # the config says rank 20, whatever the name says
    assert plots.is_main("yakv") and plots.is_main("x", budget) and not plots.is_main("x", r20)
    df = pd.DataFrame({"method": ["a", "b"], "config": [json.dumps(yakv), json.dumps(r20)]})
    assert plots.method_labels(df) == {"a": "YAKV", "b": "ShadowKV, rank 20"}
    assert plots.method_colors(df)["a"] == plots.METHOD_COLORS["yakv"]


def test_formats_are_named_by_bits_per_dimension():
    from shadowkv_lab.cache.presets import LANDMARK_PRECISIONS, RESIDUAL_LANDMARKS

    assert plots.format_name(LANDMARK_PRECISIONS["higgs2"]) == "HIGGS 2-bit"  # higgs-4-256: 8 bits per 4 dims
    assert plots.format_name(LANDMARK_PRECISIONS["higgs4"]) == "HIGGS 4-bit"
    assert plots.format_name(RESIDUAL_LANDMARKS) == "residual 2+0.5-bit"
    assert plots.format_name("native") == "bf16 16-bit" and plots.format_name("nvfp4") == "NVFP4 4-bit"
    assert plots.format_label("higgs-4-256", 2.5) == "HIGGS 2-bit (2.5 b/dim)"


def test_residual_saving_compares_with_two_bit_higgs_by_exact_bits():
    plain = pd.DataFrame({"landmark_format": ["higgs-8-256", "higgs-4-256", "higgs-2-256"], "landmark_bits": [1.5, 2.5, 4.5]})
    saving, ref = plots.residual_saving(plain, 2.25)
    assert ref == 2.5 and saving == pytest.approx(10.0)  # not 1.5 bits (np.round(1.5) == 2), not -50%
    assert plots.residual_saving(plain[plain.landmark_format != "higgs-4-256"], 2.25) is None


def test_figures_are_paper_sized_and_stamped(demo, tmp_path):
    from PIL import Image

    df, _ = demo
    stamp = plots.Stamp(profile="quick", model="demo-model", n=2, commit="0123456789abcdef")
    assert stamp.smoke and "smoke test" in stamp.footer() and "commit 0123456789" in stamp.footer()
    # cells of different sizes: the footer gives the range, not only the fewest (a reader would take it for all)
    ranged = plots.Stamp(profile="reproduction", model="m", n=24, n_max=48)
    assert "n = 24 to 48 per cell" in ranged.footer() and "n=24-48" in ranged.keywords()
    assert "n = 24 ·" in plots.Stamp(profile="r", model="m", n=24, n_max=24, commit="abc").footer()
    col = plots.accuracy_vs_memory(df[df.task == "text2json"])
    page = plots.accuracy_by_task(df)
    for fig, width in ((col, plots.COLUMN), (page, plots.PAGE)):
        pdf, png = plots.save(fig, f"w{width}", tmp_path, stamp)
        assert b"profile=quick; model=demo-model; n=2; commit=0123456789abcdef" in pdf.read_bytes()
        im = Image.open(png)
        assert im.size[0] == pytest.approx(width * 300, abs=2), im.size
        assert "smoke test" in im.info.get("Description", "")
        assert any("smoke test" in t.get_text() for t in fig.texts)  # the footer
        matplotlib.pyplot.close(fig)
    assert plots.make_stamp("full", "m", 24, commit="abc").smoke is False


def test_small_n_figures_draw_no_interval(demo):
    df, _ = demo
    d = df[(df.task == "text2json") & df.sample_id.isin(["text2json-0", "text2json-1"])]
    fig = plots.accuracy_by_task(d, methods=["full", "shadowkv", "yakv"])
    ax = fig.axes[0]
    assert "dots: samples (n < 5)" in ax.get_ylabel()
    assert not [c for c in ax.collections if type(c).__name__ == "LineCollection"]  # no error bars, no caps
    assert sum(len(c.get_offsets()) for c in ax.collections) == 6  # the sample dots instead (3 methods x 2 samples)
    matplotlib.pyplot.close(fig)


def test_accuracy_vs_memory_names_main_methods_and_greys_ablations(demo, tmp_path):
    """The study's methods each have a marker of their own, named in the legend below the figure (no text on the
    axes, so methods at one memory point never collide); ablations are grey and unnamed; the stamp's line stays
    clear of the legend."""
    df, _ = demo
    fig = plots.accuracy_vs_memory(df[df.task == "text2json"])
    ax = fig.axes[0]
    assert not ax.texts
    (leg,) = fig.legends
    names = [t.get_text() for t in leg.texts]
    assert {"Full attention", "ShadowKV", "YAKV", "YAKV, residual landmarks"} <= set(names)
    assert not any("lm_" in t or "chunk" in t for t in names)  # ablations are not named
    assert names[-2:] == ["ablations / diagnostics", "Pareto frontier (study's methods; black edge)"]
    markers = [c.lines[0].get_marker() for c in ax.containers]
    assert len(markers) == len(set(markers)) == len(names) - 2  # one marker per method
    grey = [c for c in ax.collections if c.get_label() == "ablations / diagnostics"]
    assert grey and len(grey[0].get_offsets()) > 5
    # the frontier is a staircase through its points that runs on to the axis's right edge (visible even when its
    # points sit close together), at the level of its most accurate point
    (front,) = [ln for ln in ax.lines if ln.get_label().startswith("Pareto")]
    x, y = front.get_data()
    assert x[-1] == ax.get_xlim()[1] and y[-1] == max(y) and len(x) >= 2
    plots.save(fig, "avm", tmp_path, plots.Stamp(profile="quick", model="m", n=2))
    footer = next(t for t in fig.texts if "quick profile" in t.get_text())
    r = fig.canvas.get_renderer()
    assert not footer.get_window_extent(r).overlaps(leg.get_window_extent(r))
    assert leg.get_window_extent(r).y1 < min(a.xaxis.label.get_window_extent(r).y0 for a in fig.axes)
    matplotlib.pyplot.close(fig)


def test_long_stamp_wraps_inside_a_column_figure_and_clear_of_its_legend(demo, tmp_path):
    """A column-wide figure stamped with several commits: the footer breaks into lines inside the figure's width,
    and the legend below the axes stays clear of it."""
    df, _ = demo
    fig = plots.accuracy_vs_memory(df[df.task == "text2json"])
    (leg,) = fig.legends
    commits = "+".join(f"{i:07x}" for i in range(6))
    plots.save(fig, "long", tmp_path, plots.Stamp(profile="reproduction", model="qwen2.5-coder-1.5b", n=24,
                                                  n_max=48, commit=commits))
    footer = next(t for t in fig.texts if "reproduction profile" in t.get_text())
    assert "\n" in footer.get_text() and commits[:7] in footer.get_text()
    r = fig.canvas.get_renderer()
    box = footer.get_window_extent(r)
    assert box.x1 <= fig.bbox.x1 and not box.overlaps(leg.get_window_extent(r))
    matplotlib.pyplot.close(fig)


def test_rcparams_embed_type42_at_paper_text_size():
    assert matplotlib.rcParams["pdf.fonttype"] == 42 and matplotlib.rcParams["ps.fonttype"] == 42
    assert 8 <= matplotlib.rcParams["font.size"] <= 9 and 8 <= matplotlib.rcParams["axes.labelsize"] <= 9
    assert matplotlib.rcParams["savefig.bbox"] is None  # no tight cropping: the saved width is the paper width


def test_figure_saver_writes_stamped_files_and_returns_nothing(demo, tmp_path, capsys):
    df, _ = demo
    figs = plots.FigureSaver(tmp_path / "figures" / "full", profile="full", model="m", n=24, commit="abc1234")
    assert figs.show(plots.accuracy_by_task(df), "01_accuracy_by_task") is None
    pdf = (tmp_path / "figures" / "full" / "01_accuracy_by_task.pdf").read_bytes()
    assert b"profile=full; model=m; n=24; commit=abc1234; smoke_test=False" in pdf
    assert (tmp_path / "figures" / "full" / "01_accuracy_by_task.png").is_file() and "saved" in capsys.readouterr().out


def test_budget_sweep_groups_budget_variants_by_config(demo):
    from shadowkv_lab.cache.presets import PRESETS

    df, _ = demo
    fig = plots.budget_sweep(df[df.task == "text2json"], families=(PRESETS["shadowkv"], "yakv"))
    ax = fig.axes[0]
    labels = [t.get_text() for t in fig.legends[0].texts] if fig.legends else [t.get_text() for t in ax.get_legend().texts]
    assert "ShadowKV" in labels and "YAKV" in labels
    lines = [ln for ln in ax.lines if ln.get_linestyle() != "--"]  # not the full-attention line
    assert sorted(len(ln.get_xdata()) for ln in lines) == [2, 2]  # each family: its preset and one budget variant
    matplotlib.pyplot.close(fig)


def test_sweeps_show_each_sample_below_five(demo):
    df, _ = demo
    d = df[(df.task == "text2json") & df.sample_id.isin(["text2json-0", "text2json-1"])]
    fig = plots.chunk_size(d[(d["rank"] < 0) & (d.key_format == "native") & (d.landmark_format == "bf16") | (d.method == "full")])
    dots = [c for c in fig.axes[0].collections if len(c.get_offsets()) == 2]
    assert len(dots) >= 4  # two samples at every chunk size
    matplotlib.pyplot.close(fig)


def test_residual_figure_ticks_every_measured_width(demo):
    df, _ = demo
    t = df[df.task == "text2json"]
    exact = (t.kind != "full") & (t["rank"] < 0) & (t.key_format == "native") & (t.chunk_size == 1)
    fig = plots.residual_landmarks(pd.concat([t[exact], t[t.method == "full"]]))
    ticks = {lb.get_text() for lb in fig.axes[0].get_xticklabels()}
    assert {"2.25", "2.5", "1.5"} <= ticks
    shown = sorted(float(t) for t in ticks if t)
    assert all(np.log2(b / a) >= 0.12 for a, b in zip(shown, shown[1:]))  # no two labels on top of each other
    legend_text = " ".join(x.get_text() for lg in fig.legends for x in lg.texts)
    assert "10% fewer than HIGGS 2-bit's 2.5" in legend_text
    matplotlib.pyplot.close(fig)


def test_landmark_figures_join_only_higgs_widths_and_name_families_in_the_legend(demo):
    """One quantizer's widths are joined by a line; FP8, NVFP4 and bf16 are points with markers of their own, named in
    the legend (no text label on the axes, where labels crossed the data line)."""
    df, _ = demo
    t = df[df.task == "text2json"]
    exact = (t.kind != "full") & (t["rank"] < 0) & (t.key_format == "native") & (t.chunk_size == 1)
    for fn in (plots.landmark_precision, plots.residual_landmarks):
        fig = fn(pd.concat([t[exact], t[t.method == "full"]]))
        ax = fig.axes[0]
        assert not ax.texts
        joined = [ln for ln in ax.lines if ln.get_linestyle() == "-" and len(ln.get_xdata()) > 1]
        higgs_bits = sorted(pd.to_numeric(t[exact & t.landmark_format.astype(str).str.startswith("higgs")].landmark_bits).unique())
        assert [sorted(ln.get_xdata()) for ln in joined] == [higgs_bits]
        legend_text = [x.get_text() for lg in fig.legends for x in lg.texts] or [x.get_text() for x in ax.get_legend().texts]
        assert any(x.startswith("HIGGS ") for x in legend_text) and "FP8 8-bit" in legend_text and "bf16 16-bit" in legend_text
        matplotlib.pyplot.close(fig)


def test_memory_breakdown_draws_one_bar_per_budget_family(demo):
    """Budget variants hold the same bytes per prompt token: one bar, named after the preset's own budget with
    "(all budgets)"; a config that differs in more than the budget keeps its bar."""
    df, _ = demo
    base = df[df.method == "shadowkv"]

    def variant(name, **changes):
        cfg = {**json.loads(base.config.iloc[0]), **changes, "name": name}
        return base.assign(method=name, config=json.dumps(cfg))

    rank = variant("shadowkv_r7", rank=7)
    rank = rank.assign(**{c: rank[c] * 0.5 for c in rank.columns if c.startswith("mem_device:lowrank")})
    d = pd.concat([df[df.method == "full"], base, variant("shadowkv@0.0625", sparse_budget=0.0625),
                   variant("shadowkv@0.15625", sparse_budget=0.15625), rank])
    fig = plots.memory_breakdown(d)
    ticks = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert ticks[:2] == ["Full attention", "ShadowKV (all budgets)"] and len(ticks) == 3
    assert "rank 7" in ticks[2]
    matplotlib.pyplot.close(fig)
