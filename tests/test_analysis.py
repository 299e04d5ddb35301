"""Analysis formulas on hand-made tables: CIs, the 2x2 attribution arithmetic, frontier, memory, Text2JSON fields."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from shadowkv_lab import analysis as A
from shadowkv_lab.workbook import demo_results


def test_mean_ci_matches_t_interval_and_drops_nan():
    m, h, n = A.mean_ci([1.0, 2.0, 3.0, 4.0, 5.0, float("nan")])
    assert (m, n) == (3.0, 5)
    assert h == pytest.approx(2.776 * math.sqrt(2.5) / math.sqrt(5), rel=1e-4)  # t(4) = 2.776, sd = sqrt(2.5)
    assert math.isnan(A.mean_ci([5.0])[1]) and A.mean_ci([])[2] == 0
    assert A.mean_ci([1.0, 2.0, 3.0], min_n=3)[1] == pytest.approx(4.303 / math.sqrt(3), rel=1e-4)


def test_no_interval_below_five_samples():
    m, h, n = A.mean_ci([1.0, 2.0, 3.0, 4.0])
    assert (m, n) == (2.5, 4) and math.isnan(h)
    assert A.MIN_N_CI == 5 and A.is_smoke([2, 8]) and not A.is_smoke([5, 8])
    assert A.smoke_note([2]).startswith("Smoke test: n = 2 samples") and "clipped" in A.smoke_note([6])
    assert A.smoke_note([1, 40]).startswith("n = 1 to 40 samples per cell") and "Smoke" not in A.smoke_note([1, 40])


def test_summary_clips_interval_to_the_metric_range():
    df = pd.DataFrame({"model": "m", "task": "t", "sample_id": list("abcde"), "method": "full", "score": [0, 0, 100, 100, 100]})
    s = A.summary(df).iloc[0]
    assert 60 < s["ci95"] < 100 and s["hi"] == 100 and s["lo"] == 0  # t interval 60 ± 68, clipped to 0-100
    assert s["values"] == (0, 0, 100, 100, 100)


def test_win_tie_loss_and_small_n_paired_delta():
    df = pd.DataFrame({"model": "m", "task": "t", "sample_id": list("abc") * 2, "method": ["full"] * 3 + ["yakv"] * 3,
                       "score": [50, 60, 70, 60, 60, 40]})
    w = A.win_tie_loss(df).iloc[0]
    assert (w["wins"], w["ties"], w["losses"], w["record"]) == (1, 1, 1, "1-1-1")
    d = A.paired_delta(df).iloc[0]
    assert d["delta"] == pytest.approx(-20 / 3) and math.isnan(d["ci95"]) and d["record"] == "1-1-1"
    assert d["values"] == (10.0, 0.0, -30.0)
    t = A.per_sample(df)
    assert list(t.columns) == ["full", "yakv"] and t.loc[("m", "t", "c"), "yakv"] == 40
    assert A.t95(1000) == pytest.approx(1.96, abs=0.01) and A.t95(31) == pytest.approx(2.04, abs=0.005)


def test_summary_and_score_table():
    df = pd.DataFrame({"model": "m", "task": ["t"] * 4 + ["u"] * 2, "sample_id": ["a", "b", "a", "b", "a", "b"],
                       "method": ["shadowkv", "shadowkv", "full", "full", "full", "full"], "score": [10, 30, 50, np.nan, 80, 100]})
    s = A.summary(df)
    assert list(s["method"][s["task"] == "t"]) == ["full", "shadowkv"]  # presets' order: full first
    full_t = s[(s.task == "t") & (s.method == "full")].iloc[0]
    assert full_t["mean"] == 50 and full_t["n"] == 1 and full_t["n_nan"] == 1
    t = A.score_table(df)
    assert t.loc["shadowkv", "t"] == "20.0 (10.0, 30.0)"  # n = 2: the samples, no interval
    d = A.paired_delta(df)
    assert d.loc[d.task == "t", "delta"].item() == -40  # only sample a has both


def _cells(F, LM, EM, LO, EO, sample="s0", task="text2json"):
    names = ["full", "shadowkv", "shadowkv_fullkeys", "shadowkv_oracle", "oracle"]
    return [{"model": "m", "task": task, "sample_id": sample, "method": n, "score": v} for n, v in zip(names, (F, LM, EM, LO, EO))]


def test_factorial_attribution_arithmetic():
    rows = _cells(80, 40, 60, 50, 75, "s0") + _cells(90, 90, 90, 90, 90, "s1")
    rows += _cells(100, 0, 0, 0, 0, "s2")[:-1]  # s2 lacks the oracle cell: not paired, excluded
    rows += _cells(float("nan"), 0, 0, 0, 0, "s3")  # invalid gold: excluded
    per, means = A.factorial_attribution(pd.DataFrame(rows))
    assert sorted(per["sample_id"]) == ["s0", "s1"]
    r = per.set_index("sample_id").loc["s0"]
    assert r["total_loss"] == 40 and r["budget_loss"] == 5 and r["key_loss"] == 25 and r["landmark_loss"] == 15
    assert r["interaction"] == -5  # LO + EM - EO - LM = 50 + 60 - 75 - 40
    assert r["budget_loss"] + r["key_loss"] + r["landmark_loss"] + r["interaction"] == r["total_loss"]
    assert r["key_main"] == 22.5 and r["landmark_main"] == 12.5 and r["key_main"] + r["landmark_main"] == 75 - 40
    m = means.iloc[0]
    assert m["n"] == 2 and m["total_loss"] == 20 and m["interaction"] == -2.5
    assert math.isnan(m["total_loss_ci95"])  # two samples: no interval


def test_factorial_attribution_custom_cells_and_missing():
    df = pd.DataFrame(_cells(80, 40, 60, 50, 75))
    df["method"] = df["method"].replace({"shadowkv": "shadowkv_r20", "shadowkv_oracle": "shadowkv_oracle_r20"})
    _, means = A.factorial_attribution(df, cells={"lowrank_landmark": "shadowkv_r20", "lowrank_oracle": "shadowkv_oracle_r20"})
    assert means["key_loss"].item() == 25
    with pytest.raises(ValueError, match="missing"):
        A.factorial_attribution(df)


def test_pareto_front():
    x = [100, 200, 300, 50, 400, np.nan]
    y = [50, 60, 55, 50, 90, 99]
    assert A.pareto_front(x, y).tolist() == [False, True, False, True, True, False]
    # 0.08% more memory and a higher score dominates (plain YAKV at 0 against centred YAKV); 2% more does not
    assert A.pareto_front([90.04, 90.11, 1024], [0, 82, 82.5]).tolist() == [False, True, True]
    assert A.pareto_front([90.0, 91.8], [0, 82]).tolist() == [True, True]


def test_memory_table_and_breakdown_scale_categories_to_per_token():
    df = pd.DataFrame([
        {"model": "m", "task": "t", "sample_id": "a", "method": "full", "prompt_tokens": 100, "mem_device_bytes_per_token_layer": 512.0,
         "mem_offloaded_bytes_per_token_layer": 0.0, "mem_device:prompt_kv": 512.0 * 100 * 2, "mem_device:generated": 999.0},
        {"model": "m", "task": "t", "sample_id": "a", "method": "yakv", "prompt_tokens": 100, "mem_device_bytes_per_token_layer": 40.0,
         "mem_offloaded_bytes_per_token_layer": 136.0, "mem_device:landmarks": 30.0 * 200, "mem_device:local": 10.0 * 200,
         "mem_device:generated": 5.0, "mem_offloaded:keys": 68.0 * 200, "mem_offloaded:values": 68.0 * 200},
    ])
    t = A.memory_table(df).set_index("method")
    assert t.loc["yakv", "device_pct_full"] == pytest.approx(100 * 40 / 512)
    b = A.memory_breakdown(df).set_index(["method", "role", "category"])["B_per_token_layer"]
    assert b[("yakv", "device", "landmarks")] == pytest.approx(30.0)
    assert b[("yakv", "offloaded", "values")] == pytest.approx(68.0)
    assert ("yakv", "device", "generated") not in b.index  # not prompt-proportional


def test_accuracy_vs_memory_flags_frontier_on_demo():
    df, _ = demo_results(n=3)
    s = A.accuracy_vs_memory(df)
    assert s["on_front"].any() and set(s["task"]) == {"text2json", "multineedle", "ruler_niah_single"}
    g = s[s.task == "text2json"]
    best = g.loc[g["mean"].idxmax()]
    assert best["on_front"]  # the most accurate point is always on the frontier


def test_attention_by_axes():
    _, rec = demo_results(n=2)
    for by, col in (("layer", "layer"), ("position", "position"), ("step", "step")):
        t = A.attention_by(rec, by=by, bins=4)
        assert col in t.columns and {"recall", "mass", "err_selection", "err_approx"} <= set(t.columns)
        assert t["n"].sum() == len(rec)
    assert A.attention_by(rec, by="position", bins=4)["position"].between(0, 1).all()
    with pytest.raises(ValueError, match="allowed"):
        A.attention_by(rec, by="head")


def test_entity_errors_field_statuses():
    gold = [{"name": "Ann Lee", "city": "Oslo", "year": "1990"}, {"name": "Bo\u2019s Inc", "city": "Rome", "year": "2001"},
            {"name": "Cy", "city": "Lima", "year": "1970"}]
    pred = '```json\n[{"name": "Ann Lee", "city": "Oslo", "year": 1991}, {"name": "Bo\'s Inc", "city": null, "year": 2001},' \
           ' {"name": "Zed", "city": "X", "year": "1"}, {"name": "Ann Lee", "city": "Oslo", "year": "1990"}]\n```'
    prompt = "Ann Lee lives in Oslo. ... Bo's Inc is in Rome. " + "x" * 100 + " Cy is in Lima."
    rows = pd.DataFrame(A.entity_errors(pred, gold, prompt))
    st = rows.set_index(["entity", "field"])["status"]
    assert st[("Ann Lee", "city")] == "correct" and st[("Ann Lee", "year")] == "wrong_value"
    assert st[("Bo's Inc", "city")] == "missing_value" and st[("Bo's Inc", "year")] == "correct"  # 2001 == "2001"
    assert st[("Cy", "city")] == "missing_entity"
    assert (rows["status"] == "extra_entity").sum() == 2  # Zed and the duplicate Ann Lee
    assert (rows.loc[rows.entity == "Ann Lee", "position"] == 0.0).all() and rows.loc[rows.entity == "Cy", "position"].iloc[0] > 0.5
    assert A.entity_errors("no json here", gold)[0]["status"] == "unparseable"
    assert A.entity_errors("[1] and [2]", gold)[0]["status"] == "unparseable"  # reference rule: one [ and one ]


def test_text2json_field_errors_and_counts():
    gold = {"s0": [{"name": "A", "k": "1"}], "s1": json.dumps([{"name": "B", "k": "2"}])}
    df = pd.DataFrame({"model": "m", "task": "text2json", "sample_id": ["s0", "s1", "s0"], "method": ["full", "full", "yakv"],
                       "prediction": ['[{"name": "A", "k": "1"}]', '[{"name": "B", "k": "3"}]', "oops"]})
    e = A.text2json_field_errors(df, gold)
    c = A.error_counts(e)
    assert c.loc["full", "correct"] == 1 and c.loc["full", "wrong_value"] == 1 and c.loc["yakv", "unparseable"] == 1


def test_depth_scores_and_sweep_on_demo():
    df, _ = demo_results(n=2)
    d = A.depth_scores(df)
    assert set(d["depth"]) == set(range(0, 101, 10)) and (d["task"] == "multineedle").all()
    s = A.sweep(df[df.method.str.startswith("yakv_exactkv_c")], "chunk_size")  # chunk_size_ablation's derived names
    assert set(s["chunk_size"]) == {2, 4, 8, 16}


def test_load_benchmarks_absent_rows_and_tables(tmp_path):
    from shadowkv_lab.results import bench_row, write_bench_rows

    assert A.load_benchmarks(tmp_path / "nope").empty
    st = dict(benchmark="bench_decode_step", device_name="H200", model="m", timestamp="2026-11-29T00:00:00+00:00")
    old = [bench_row(run="a", table="steps", method="full", context=4096, batch=1, metric=m, value=v, **st)
           for m, v in (("step_ms", 2.0), ("tok_s_layer", 500.0))]
    new = [bench_row(run="b", table="steps", method="yakv", variant="nocache", context=4096, batch=1, metric="step_ms", value=1.0,
                     **{**st, "timestamp": "2026-11-30T00:00:00+00:00"})]
    write_bench_rows(old, tmp_path / "a.rows.csv")
    write_bench_rows(new, tmp_path / "b.rows.csv")
    (tmp_path / "c.json").write_text("{not a rows file")  # other files are not read
    b = A.load_benchmarks(tmp_path)
    assert len(b) == 3 and set(b.source) == {"a.rows.csv", "b.rows.csv"}
    assert list(A.newest_run(b, "bench_decode_step", "steps")["run"]) == ["b"]
    assert A.newest_run(b, "bench_decode_step", run="a")["value"].tolist() == [2.0, 500.0]
    with pytest.raises(ValueError, match="run='zz': no such run of bench_decode_step; runs: \\['a', 'b'\\]"):
        A.newest_run(b, "bench_decode_step", run="zz")
    t = A.bench_table(b, "steps")
    assert list(t.method) == ["full", "yakv"] and t.loc[0, "tok_s_layer"] == 500.0 and pd.isna(t.loc[1, "tok_s_layer"])
    (tmp_path / "d.rows.csv").write_text("benchmark,value\nx,1\n")
    with pytest.raises(ValueError, match="d.rows.csv: columns do not match the benchmark schema"):
        A.load_benchmarks(tmp_path)


def test_write_summary_csv_and_markdown(tmp_path):
    df, _ = demo_results(n=2)
    csv, md = A.write_summary(df, tmp_path)
    s = pd.read_csv(csv)
    assert {"model", "task", "method", "n", "mean", "ci95", "delta_vs_full", "device_B_per_token_layer", "truncated_share"} <= set(s.columns)
    text = md.read_text()
    assert "| method |" in text and "±" in text and "yakv" in text


def test_to_markdown_escapes_and_rounds():
    out = A.to_markdown(pd.DataFrame({"a": [1.23456, float("nan")], "b": ["x|y", "z"]}))
    assert out.splitlines()[2] == "| 1.23 | x\\|y |" and out.splitlines()[3] == "|  | z |"


def test_task_group():
    assert A.task_group("ruler_niah_single") == "easy" and A.task_group("text2json") == "context-intensive"
    assert A.task_group("ruler_niah_single@16k") == "easy" and A.task_group("text2json@8k") == "context-intensive"


def test_tasks_by_length_names_the_prompt_length_once():
    from shadowkv_lab.plots.labels import task_label

    df = pd.DataFrame({"task": ["text2json", "text2json", "multineedle", "longproc"],
                       "meta_target_tokens": [16384, 8192, 30000, None]})
    out = A.tasks_by_length(df)
    assert out["task"].tolist() == ["text2json@16k", "text2json@8k", "multineedle@30k", "longproc"]
    assert A.tasks_by_length(out)["task"].tolist() == out["task"].tolist()  # already named: unchanged
    assert df["task"].iloc[0] == "text2json"  # the input is not modified
    assert A.tasks_by_length(df.drop(columns="meta_target_tokens")).equals(df.drop(columns="meta_target_tokens"))
    assert task_label("text2json@16k") == "Text2JSON 16k" and task_label("text2json") == "Text2JSON"
    assert task_label("multineedle@16k", wrap=15) == "MultiNeedle\n16k"  # the length on its own line
    assert task_label("ruler_niah_multikey@16k", wrap=15) == "RULER NIAH\nmulti-key\n16k"
    with pytest.raises(ValueError, match="meta_target_tokens.*positive.*-5"):
        A.tasks_by_length(pd.DataFrame({"task": ["t"], "meta_target_tokens": [-5]}))


def test_closed_form_vs_measured_names_the_candidate_ids():
    from shadowkv_lab.cache.memory import analytic_bytes_per_token
    from shadowkv_lab.cache.presets import PRESETS

    cfg = PRESETS["yakv"]
    closed = analytic_bytes_per_token(cfg, n_kv_heads=2, head_dim=64, prompt_len=2048)["device"]
    layers, L = 4, 2048
    row = {"model": "m", "task": "t", "sample_id": "s", "method": "yakv", "config": json.dumps(cfg.to_dict()), "prompt_tokens": L,
           "mem_device_bytes_per_token_layer": closed + 3.0, "mem_device:landmarks": closed * L * layers,
           "mem_device:candidate_ids": 3.0 * L * layers}
    t = A.closed_form_vs_measured(pd.DataFrame([row]), n_kv_heads=2, head_dim=64).iloc[0]
    assert t["closed_form"] == pytest.approx(closed) and t["candidate_ids"] == pytest.approx(3.0)
    assert t["unexplained"] == pytest.approx(0.0, abs=1e-9)


def test_landmark_bytes_against_two_bit_higgs():
    df, _ = demo_results(n=2)
    t = A.landmark_bytes(df).set_index("method")
    ref = t[t.landmark_format == "higgs-4-256"]["vs_reference_pct"]
    assert len(ref) and (ref == 0).all()
    res = t[t.landmark_format.astype(str).str.startswith("residual")]["vs_reference_pct"]
    assert len(res) and (res < 0).all()


def test_paper_numbers_beside_ours():
    m = A.paper_memory().set_index("method")
    assert m.loc["full", "ours GPU B/token/layer"] == 4096 == m.loc["full", "paper GPU B/token/layer"]
    assert m.loc["yakv", "paper GPU B/token/layer"] == 258 and abs(m.loc["yakv", "gap %"]) < 15
    b = A.paper_landmark_bits().set_index("head dim")
    assert b.loc["paper (nominal)", "residual saving %"] == 25 and b.loc["64", "residual saving %"] == pytest.approx(10.0)
    assert b.loc["64", "2-bit HIGGS"] == 2.5 and b.loc["64", "residual"] == 2.25


def test_summary_markdown_labels_a_smoke_test(tmp_path):
    df, _ = demo_results(n=2)
    _, md = A.write_summary(df, tmp_path)
    text = md.read_text()
    assert "Smoke test: n = 2" in text and text.count("±") == 1  # only in the heading: no interval in the table
