"""Every figure function runs on a small synthetic results table and saves PDF (Type 42 fonts) + PNG."""

import json

import matplotlib
import pandas as pd
import pytest

matplotlib.use("Agg")

from shadowkv_lab import analysis as A  # noqa: E402
from shadowkv_lab import plots  # noqa: E402
from shadowkv_lab.workbook import demo_results  # noqa: E402


@pytest.fixture(scope="module")
def demo():
    return demo_results(n=3)


def _figures(df, rec, tmp_path):
    _, means = A.factorial_attribution(df)
    gold = {f"text2json-{i}": [{"name": "Ann", "k": "1"}, {"name": "Bob", "k": "2"}] for i in range(3)}
    df = df.assign(prediction='[{"name": "Ann", "k": "1"}]')
    errs = A.text2json_field_errors(df, gold, {k: "Ann then Bob" for k in gold})
    (tmp_path / "bench").mkdir(exist_ok=True)
    (tmp_path / "bench" / "r.json").write_text(json.dumps([{"method": m, "context": c, "batch": 1, "tokens_per_s": 1000 / c ** 0.5}
                                                           for m in ("full", "yakv") for c in (4096, 16384, 65536)]))
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
        "capacity": plots.capacity(pd.DataFrame([{"method": "full", "context": 131072, "max_batch": 3, "tokens_per_s[full]": 180.0},
                                                 {"method": "yakv", "context": 131072, "max_batch": 29, "tokens_per_s[yakv_fp8]": 70.0,
                                                  "tokens_per_s[yakv_fp8_nocache]": 75.0}])),
        "cpu_decode_speed": plots.cpu_decode_speed(df),
        "landmark_scoring": plots.landmark_scoring(_scoring_bench(tmp_path)),
        "landmark_scoring_absent": plots.landmark_scoring(bench),
    }


def _scoring_bench(tmp_path):
    """Two benchmark files with scoring tables; the newer (by date) holds a sweep row."""
    d = tmp_path / "scoring_bench"
    d.mkdir(exist_ok=True)
    rows = lambda k: [{"landmarks": f, "rule": r, "ns_per_landmark": k * v} for f, v in (("bf16", 0.15), ("higgs2", 0.44))  # noqa: E731
                      for r in ("softmax_max", "mean_dot")]
    (d / "a_old.json").write_text(json.dumps({"date": "2026-11-28", "device": "H200", "scoring": rows(2.0)}))
    (d / "b_new.json").write_text(json.dumps({"date": "2026-11-29", "device": "H200", "scoring": rows(1.0) + [
        {"landmarks": "higgs2", "rule": "softmax_max bm64 w4 stored", "ns_per_landmark": 0.35},
        {"landmarks": "-", "rule": "topk(3.125%)", "ns_per_landmark": 0.02}]}))
    (d / "kernels_e2e.json").write_text(json.dumps({"model": "m", "rows": [
        {"seed": 7, "method": "shadowkv", "identical": True, "first_divergence": None},
        {"seed": 7, "method": "yakv", "identical": False, "first_divergence": 30, "reference_margin_at_divergence": 0.0}]}))
    return A.load_benchmarks(d)


def test_scoring_rows_take_the_newest_file_and_kernel_agreement_its_rows(tmp_path):
    b = _scoring_bench(tmp_path)
    s = A.scoring_rows(b)
    assert set(s["source"]) == {"b_new.json"} and len(s) == 5  # top-k row ("-") dropped
    assert s[(s.landmarks == "bf16") & (s.rule == "softmax_max")]["ns_per_landmark"].iloc[0] == pytest.approx(0.15)
    k = A.kernel_agreement(b)
    assert list(k["method"]) == ["shadowkv", "yakv"] and list(k["identical"]) == [True, False]
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


def test_accuracy_vs_memory_names_main_methods_and_greys_ablations(demo):
    df, _ = demo
    fig = plots.accuracy_vs_memory(df[df.task == "text2json"])
    ax = fig.axes[0]
    texts = {t.get_text() for t in ax.texts}
    assert {"Full attention", "ShadowKV", "YAKV", "YAKV, residual landmarks"} <= texts
    assert not any("lm_" in t or "chunk" in t for t in texts)  # ablations are not named
    grey = [c for c in ax.collections if c.get_label() == "ablations / diagnostics"]
    assert grey and len(grey[0].get_offsets()) > 5
    assert ax.get_legend() is None or len(ax.get_legend().texts) <= 3
    fig.canvas.draw()
    boxes = [t.get_window_extent() for t in ax.texts]
    overlaps = [(a, b) for i, a in enumerate(ax.texts) for j, b in enumerate(ax.texts) if i < j and boxes[i].overlaps(boxes[j])]
    assert not overlaps, [(a.get_text(), b.get_text()) for a, b in overlaps]  # direct labels do not collide
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
