"""Benchmark rows: the schema (results.BENCH_COLUMNS), its writer and reader, the conversion of the committed
measurement files (benchmarks/to_rows.py), the scripts' rows and the speed figures that read them."""

import importlib.util
import json
import shutil
import sys
import time
from pathlib import Path

import matplotlib
import pandas as pd
import pytest
import torch

matplotlib.use("Agg")

from shadowkv_lab import analysis as A  # noqa: E402
from shadowkv_lab import plots  # noqa: E402
from shadowkv_lab.results import (BENCH_COLUMNS, BENCH_UNITS, bench_row, check_bench_rows, read_bench_rows,  # noqa: E402
                                  write_bench_rows)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
ST = dict(benchmark="bench_decode_step", run="r1", table="steps", device_name="cpu", timestamp="2026-12-04T18:00:00+00:00")


def _script(name):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def to_rows():
    return _script("to_rows")


@pytest.mark.parametrize("bad, message", [
    (dict(metric="speed"), "unknown benchmark metric 'speed'; allowed: \\["),
    (dict(value="fast"), "value='fast'; must be a finite number"),
    (dict(value=float("inf")), "value=inf; must be a finite number"),
    (dict(context=-1), "context=-1; must be a non-negative integer or empty"),
    (dict(batch=1.5), "batch=1.5; must be a non-negative integer or empty"),
    (dict(run=""), "run=''; must be a non-empty string"),
    (dict(model=None), "model=None; must be a string"),
    (dict(timestamp="yesterday"), "timestamp='yesterday'; must be ISO 8601"),
    (dict(detail="x" * 301), "detail of 301 characters; at most 300"),
])
def test_bench_row_rejects_bad_fields(bad, message):
    with pytest.raises(ValueError, match=message):
        bench_row(**{**ST, "metric": "step_ms", "value": 1.0, **bad})


def test_bench_row_fills_the_unit_and_keeps_the_column_order():
    r = bench_row(**ST, metric="tok_s_layer", value=True, context=4096.0, batch=None)
    assert list(r) == list(BENCH_COLUMNS) and r["unit"] == BENCH_UNITS["tok_s_layer"] == "tok/s"
    assert r["value"] == 1.0 and r["context"] == 4096 and r["batch"] is None and r["commit"] == ""


def test_check_bench_rows_names_the_bad_column_and_unit():
    df = pd.DataFrame([bench_row(**ST, metric="step_ms", value=1.0)])
    with pytest.raises(ValueError, match=r"missing \['detail'\], unexpected \['note'\]"):
        check_bench_rows(df.rename(columns={"detail": "note"}))
    with pytest.raises(ValueError, match="row 0\\): unit 's' for step_ms; must be 'ms'"):
        check_bench_rows(df.assign(unit="s"))


def test_write_appends_atomically_and_reads_back(tmp_path):
    p = tmp_path / "x.rows.csv"
    a = [bench_row(**ST, method="full", context=4096, batch=1, metric="step_ms", value=0.1234567890123)]
    b = [bench_row(**ST, method="yakv", variant="nocache", metric="hit_rate", value=0.5, detail="alpha, 0.9 \"q\"")]
    write_bench_rows(a, p)
    write_bench_rows(b, p, append=True)
    assert [f.name for f in tmp_path.iterdir()] == ["x.rows.csv"]  # no temp file left behind
    df = read_bench_rows(p)
    assert list(df.columns) == list(BENCH_COLUMNS) and len(df) == 2
    assert df.loc[0, "value"] == 0.1234567890123 and df.loc[1, "detail"] == "alpha, 0.9 \"q\""
    assert df.loc[0, "context"] == 4096 and pd.isna(df.loc[1, "context"]) and df.loc[1, "variant"] == "nocache"
    write_bench_rows(b, p)  # without append: one file per run, replaced
    assert len(read_bench_rows(p)) == 1
    with pytest.raises(ValueError, match=r"unexpected \['speed'\]"):
        write_bench_rows([{**b[0], "speed": 1}], p)
    with pytest.raises(ValueError, match="must end in '.rows.csv'"):
        write_bench_rows(b, tmp_path / "x.csv")
    (tmp_path / "bad.rows.csv").write_text(p.read_text().replace("hit_rate", "hits"))
    with pytest.raises(ValueError, match="bad.rows.csv: benchmark row \\(row 0\\): unknown metric 'hits'"):
        read_bench_rows(tmp_path / "bad.rows.csv")


RUN_COUNTS = {"decode_step": 824, "decode_step_exact_higgs": 828, "scoring_sweep_h200": 76, "capacity": 46,
              "cache_step_cpu": 20, "runner_cpu": 23, "runner_cpu_per_row": 10, "runner_h200": 23,
              "profile_step_h200": 126, "quant_error": 36, "kernels_e2e": 44}


def test_converter_keeps_every_committed_measurement(to_rows):
    rows = pd.DataFrame(to_rows.convert(RESULTS))
    assert rows.groupby("run", sort=False).size().to_dict() == RUN_COUNTS
    committed = read_bench_rows(RESULTS / "bench.rows.csv")  # the committed rows file is the converter's output
    pd.testing.assert_frame_equal(committed, check_bench_rows(rows))
    v = committed.set_index(["run", "table", "method", "variant", "context", "batch", "metric"])["value"]
    assert v["decode_step", "steps", "full", "", 131072, 32, "step_ms"] == pytest.approx(3.7194559574127197)  # decode_step.csv
    assert v["decode_step", "steps", "shadowkv", "nocache", 131072, 1, "hit_rate"] == 0.0
    assert v["decode_step_exact_higgs", "steps", "yakv_fp8", "cache", 131072, 32, "step_ms"] == pytest.approx(47.0, abs=0.05)
    assert v["scoring_sweep_h200", "scoring", "bf16", "softmax_max", 131072, 8, "ns_per_landmark"] == pytest.approx(0.147, abs=5e-4)
    assert v["capacity", "capacity", "yakv", "", 131072, pd.NA, "max_batch"] == 29
    assert v["capacity", "capacity", "shadowkv", "nocache", 131072, 21, "tok_s"] == pytest.approx(253.879, abs=1e-3)
    assert v["runner_h200", "comparison", "", "", 16384, 128, "speedup"] == pytest.approx(6.592, abs=1e-3)
    assert v["kernels_e2e", "agreement", "yakv", "seed=7", 8213, 1, "first_divergence"] == 30
    steps = json.loads((RESULTS / "decode_step.json").read_text())["steps"]
    assert (committed[(committed.run == "decode_step") & (committed.metric == "step_ms")]["value"].tolist()
            == [s["ms"] for s in steps])


def test_converter_refuses_a_step_csv_that_disagrees(to_rows, tmp_path):
    d = tmp_path / "results"
    shutil.copytree(RESULTS, d, ignore=shutil.ignore_patterns("*.parquet", "key_offset"))
    text = (d / "decode_step.csv").read_text().splitlines()
    text[1] = text[1].replace("full,131072,1,0.17", "full,131072,1,0.27")
    (d / "decode_step.csv").write_text("\n".join(text) + "\n")
    with pytest.raises(ValueError, match="decode_step.csv: row .* differs from the JSON's step"):
        to_rows.convert(d)


def test_capacity_script_writes_rows(tmp_path, monkeypatch):
    cap = _script("bench_capacity")
    monkeypatch.setattr(sys, "argv", ["bench_capacity.py", "--out", str(tmp_path)])
    cap.main()
    rows = read_bench_rows(tmp_path / "capacity.rows.csv")
    assert set(rows.benchmark) == {"bench_capacity"} and rows.run.nunique() == 1 and set(rows.device_name) == {"NVIDIA H200"}
    mb = rows[rows.metric == "max_batch"].set_index("method")["value"].to_dict()
    assert mb == {"full": 3, "shadowkv": 21, "yakv": 29}  # the committed capacity.json's batches
    assert json.loads((tmp_path / "capacity.json").read_text())[2]["max_batch"] == 29


def test_decode_step_rows_split_nocache_and_scoring(to_rows):
    st = to_rows.stamp("bench_decode_step", "cpu (smoke)", commit="abc")
    res = {"steps": [{"method": "shadowkv_nocache", "L": 1024, "B": 2, "ms": 1.0, "bound_ms": 0.5, "ratio": 2.0,
                      "tokens_per_s_layer": 2000.0, "hit_rate": 0.0, "phases": {"score": 0.4, "attend": 0.6}}],
           "scoring": [{"landmarks": "-", "rule": "topk(3.125%)", "ms": 0.1, "ns_per_landmark": 0.02}], "hits": []}
    rows = pd.DataFrame(to_rows.decode_step_rows(res, st, scoring_context=1024, scoring_batch=2))
    assert rows.run.iloc[0].startswith("bench_decode_step-cpu-smoke-") and set(rows.commit) == {"abc"}
    s = rows[rows.table == "steps"]
    assert set(s.method) == {"shadowkv"} and set(s.variant) == {"nocache"} and len(s) == 5
    assert rows[rows.table == "scoring"][["method", "variant"]].values.tolist() == [["topk", "topk(3.125%)"]] * 2
    p = rows[rows.table == "step_phases"]
    assert p[["method", "variant", "metric", "value"]].values.tolist() == [["shadowkv", "nocache/score", "phase_ms", 0.4],
                                                                        ["shadowkv", "nocache/attend", "phase_ms", 0.6]]


def test_step_phases_are_timed_apart_and_add_up_to_the_eager_step():
    bench = _script("bench_decode_step")
    waits = dict(score=0.004, select=0.001, hits=0.0, fetch=0.006, attend=0.002)

    def step(mark):
        for name in bench.PHASES:
            time.sleep(waits[name])
            mark(name)

    class Stream:
        def next(self):
            return torch.zeros(1)

    ms = bench.phase_ms(step, torch.zeros(1), Stream(), n_time=3)
    assert list(ms) == [*bench.PHASES, "eager"]
    for name, w in waits.items():
        assert w * 1e3 <= ms[name] < w * 1e3 + 5
    assert ms["eager"] == pytest.approx(sum(ms[n] for n in bench.PHASES), rel=0.2)


def test_speed_figures_read_the_committed_rows():
    bench = A.load_benchmarks(RESULTS)
    assert set(bench.source) >= {"bench.rows.csv"}
    fig = plots.decode_speed(bench)  # the newest full sweep (every context and batch): the H100 run of LUT scoring
    assert fig._suptitle.get_text() == "Decode speed, NVIDIA H100 80GB HBM3 (20261207T140152)"
    assert len(fig.axes) >= 3 and len(fig.axes[0].lines) == 7
    spot = A.newest_run(bench, "bench_decode_step", "steps", "bench_decode_step-nvidia-h100-80gb-hbm3-20261206T080237")
    assert set(zip(spot.context, spot.batch)) == {(131072, 32)}  # one setting only: a newer one would not be drawn
    assert plots.speed._widest_run(bench, "bench_decode_step", "steps", "tok_s_layer").endswith("20261207T140152")
    fig = plots.step_phases(bench)  # the phases of the newest run, at 128k and B = 32
    assert "131,072 tokens, batch 32" in fig._suptitle.get_text() and len(fig.axes[0].get_yticklabels()) == 6
    fig = plots.decode_speed(bench, run="decode_step")
    assert "(decode_step)" in fig._suptitle.get_text()
    with pytest.raises(ValueError, match="run='nope': no such run of bench_decode_step \\(steps\\)"):
        plots.decode_speed(bench, run="nope")
    with pytest.raises(ValueError, match="benchmark='bench_foo'; allowed: \\['bench_decode_step', 'bench_e2e'\\]"):
        plots.decode_speed(bench, benchmark="bench_foo")
    fig = plots.capacity(bench)
    assert [p.get_height() for p in fig.axes[0].patches] == [3, 21, 29]
    s = A.scoring_rows(bench)
    assert set(s.run) == {"bench_decode_step-nvidia-h100-80gb-hbm3-20261207T140152"} and len(s) == 8  # the newest
    assert s.loc[(s.landmarks == "higgs2_lut") & (s.rule == "softmax_max"), "ns_per_landmark"].iloc[0] < \
        s.loc[(s.landmarks == "bf16") & (s.rule == "softmax_max"), "ns_per_landmark"].iloc[0]  # LUT beats bf16
    assert len(A.scoring_rows(bench, run="scoring_sweep_h200")) == 22
    assert plots.landmark_scoring(bench).axes
    k = A.kernel_agreement(bench)
    assert len(k) == 6 and k.identical.tolist() == [True, False, True, False, False, False] and k.loc[k.method == "yakv", "first_divergence"].iloc[0] == 30
    matplotlib.pyplot.close("all")


def test_cache_step_script_writes_rows_on_a_tiny_model(tmp_path):
    """bench_cache_step.py on CPU with a tiny random model: its JSON and the same numbers as rows."""
    _script("bench_cache_step").main(["--model", "tiny-qwen2", "--tokens", "256", "--methods", "full,yakv", "--steps", "2",
                                      "--warmup", "1", "--out", str(tmp_path / "cache_step_cpu.json")])
    rows = read_bench_rows(tmp_path / "cache_step_cpu.rows.csv")
    data = json.loads((tmp_path / "cache_step_cpu.json").read_text())
    assert set(rows.benchmark) == {"bench_cache_step"} and set(rows.device_name) == {"cpu"} and set(rows.context) == {256}
    got = rows[rows.metric == "step_ms"].set_index("method")["value"].to_dict()
    assert got == {r["method"]: pytest.approx(r["ms_per_step"]) for r in data["rows"]}
    t = A.bench_table(A.load_benchmarks(tmp_path), "steps")
    assert list(t.method) == ["full", "yakv"] and t.loc[0, "ratio_to_full"] == 1.0


def test_profile_step_times_stacking_steps_and_methods_apart(tmp_path):
    """profile_step.py on CPU with a tiny random model: stacking, first step, steady steps and each method's attention
    steps in the JSON and as rows; the methods' attention is part of the eager step."""
    from shadowkv_lab.models import load_model
    from shadowkv_lab.tasks import get_task
    from shadowkv_lab.tasks.jsonl import write_jsonl

    _, tok = load_model("tiny-qwen2")
    task = get_task("ruler_niah_single")
    data = tmp_path / "niah.jsonl"
    write_jsonl(data, [task.to_record(x) for x in task.load(None, n=2, tokens=400, seed=0, tokenizer=tok)])
    _script("profile_step").main(["--model", "tiny-qwen2", "--task", "ruler_niah_single", "--data", str(data), "--n", "2",
                                  "--methods", "full,yakv", "--steps", "2", "--profile-steps", "1", "--eager-steps", "2",
                                  "--out", str(tmp_path)])
    res = json.loads((tmp_path / "profile_step_cpu.json").read_text())
    assert res["rows"] == 4 and res["graphs"] is False and min(res["setup_ms"], res["capture_ms"], res["step_ms"]) > 0
    assert [(g["method"], g["rows"]) for g in res["groups"]] == [("full", 2), ("yakv", 2)]
    assert 0 < sum(g["group_ms"] for g in res["groups"]) < res["eager_step_ms"]
    rows = read_bench_rows(tmp_path / "profile_step_cpu.rows.csv")
    g = rows[rows.table == "groups"].set_index("method")["value"]
    assert g.to_dict() == {x["method"]: pytest.approx(x["group_ms"]) for x in res["groups"]}
    assert {"setup_ms", "capture_ms", "eager_step_ms", "step_ms"} <= set(rows[rows.table == "step"].metric)
    with pytest.raises(SystemExit, match="--eager-steps 0: must be >= 1"):
        _script("profile_step").main(["--data", str(data), "--eager-steps", "0"])


def test_e2e_rows_and_their_figure(to_rows, tmp_path):
    st = to_rows.stamp("bench_e2e", "cpu", commit="")
    rows = to_rows.e2e_rows([{"method": m, "B": b, "new": 8, "context": c, "kernels": False, "decode_s": 1.0,
                              "tokens_per_s": 7.0 * b / c ** 0.5, "hit_rate": None if m == "full" else 0.6, "cache_gpu_gb": 0.1}
                             for m in ("full", "yakv") for b in (1, 8) for c in (1024, 4096)], st, model="m")
    write_bench_rows(rows, tmp_path / "e2e_cpu_4096.rows.csv")
    bench = A.load_benchmarks(tmp_path)
    assert set(bench.variant) == {"reference"} and len(bench[bench.metric == "hit_rate"]) == 4  # full has no hit rate
    fig = plots.decode_speed(bench, benchmark="bench_e2e")
    assert [ax.get_title() for ax in fig.axes[:2]] == ["batch 1", "batch 8"] and len(fig.axes[0].lines) == 2
    fig = plots.decode_speed(bench)  # no bench_decode_step rows here
    assert "No GPU decode benchmark results" in fig.axes[0].texts[0].get_text()
    matplotlib.pyplot.close("all")
