"""Runner tests on tiny random models: batched == alone, resume skip, scoring, dry run, CLI errors."""

from __future__ import annotations

import json
import random

import pytest

from shadowkv_lab.results import done_keys, load

METHODS = ["full", "yakv", "lm_bf16_c1", "shadowkv_fullkeys"]
WORDS = "the quick brown fox jumps over lazy dog paris is capital of france name price weight product company".split()


class FakeTask:
    """A task with the Task interface: short word-salad prompts, gold = one word, score = 100 if it is printed."""

    name = "fake"
    primary_metric = "hit"
    max_new_tokens = 6

    def load(self, path=None, *, n=None, tokens=None, seed=0, tokenizer=None):
        from shadowkv_lab.tasks.base import Sample

        rng = random.Random(seed)
        out = []
        for i in range(n or 4):
            words = [rng.choice(WORDS) for _ in range((tokens or 400) // 2 + 37 * i)]
            meta = {"depth": 10 * i, "domain": rng.choice(["a", "b"]), "tags": ["not", "scalar"]}
            if i % 2:
                meta["max_new_tokens"] = 4 + i  # ragged caps inside one batch
            out.append(Sample(id=f"fake-{i}", prompt=" ".join(words), gold=rng.choice(WORDS), meta=meta))
        return out

    def score(self, prediction, gold):
        return {"hit": 100.0 if gold in prediction else 0.0, "chars": float(len(prediction))}

    def max_new_tokens_for(self, sample):
        v = sample.meta.get("max_new_tokens")
        return int(v) if isinstance(v, int) and v > 0 else self.max_new_tokens


@pytest.fixture(scope="module")
def tiny():
    from shadowkv_lab.testing import tiny_model

    return tiny_model("qwen2")


@pytest.fixture(scope="module")
def samples():
    return FakeTask().load(n=4, tokens=600, seed=0)


def _count_prefills(monkeypatch):
    import shadowkv_lab.runner as runner

    calls = []
    real = runner.prefill

    def counting(model, ids, **kw):
        calls.append(int(ids.shape[0]))
        return real(model, ids, **kw)

    monkeypatch.setattr(runner, "prefill", counting)
    return calls


def test_batched_equals_alone(tiny, samples, tmp_path, monkeypatch):
    """Rows decoded together (several samples per wave, one sample straddling two waves, ragged caps and stops) give
    exactly the tokens of `generate` run per method per sample; each sample is prefilled once."""
    from shadowkv_lab.generation import encode_prompt, generate
    from shadowkv_lab.runner import run

    model, tok = tiny
    task = FakeTask()
    # Make one frequent token a stop token so that rows stop at different steps inside a batch.
    eos = model.generation_config.eos_token_id
    first = generate(model, tok, samples[0].prompt, "full", max_new_tokens=6).token_ids
    monkeypatch.setattr(model.generation_config, "eos_token_id", [eos, first[2]])
    samples = samples[:3]
    calls = _count_prefills(monkeypatch)
    df = run(model, tok, [(task, samples)], METHODS, tmp_path / "res", model_name="tiny", batch_size=3, progress=False)
    assert len(calls) == len(samples)
    assert len(df) == len(samples) * len(METHODS) and (df.fallback == "").all()
    assert set(df.finish_reason) == {"stop", "length"}
    assert set(df.batch_rows) <= {1, 2, 3}
    assert all(r.method in r.batch_methods.split(",") and set(r.batch_methods.split(",")) <= set(METHODS) for r in df.itertuples())
    for r in df.itertuples():
        s = next(s for s in samples if s.id == r.sample_id)
        alone = generate(model, tok, encode_prompt(tok, s.prompt), r.method, max_new_tokens=task.max_new_tokens_for(s))
        assert json.loads(r.token_ids) == alone.token_ids, (r.sample_id, r.method)
        assert alone.text == r.prediction and alone.finish_reason == r.finish_reason and alone.new_tokens == r.new_tokens
        assert alone.memory.to_dict()["device_bytes"] == r.mem_device_bytes


def test_on_device_same_tokens_recorded_placement(tiny, samples, tmp_path):
    """on_device keeps every cache on the compute device: same tokens and scores, offload=False in the config and no
    offloaded bytes, a different config hash (so both placements can live in one store)."""
    from shadowkv_lab.runner import run

    model, tok = tiny
    task, methods = FakeTask(), ["yakv", "shadowkv_fullkeys"]
    off = run(model, tok, [(task, samples[:2])], methods, tmp_path / "res", model_name="tiny", progress=False)
    on = run(model, tok, [(task, samples[:2])], methods, tmp_path / "res", model_name="tiny", progress=False, on_device=True)
    key = ["sample_id", "method"]
    off, on = off.sort_values(key).reset_index(drop=True), on.sort_values(key).reset_index(drop=True)
    assert list(on.token_ids) == list(off.token_ids) and list(on.score) == list(off.score)
    assert all(json.loads(c)["offload"] is False for c in on.config) and (on.mem_offloaded_bytes == 0).all()
    assert (off.mem_offloaded_bytes > 0).all() and set(on.config_hash).isdisjoint(off.config_hash)
    scaled = run(model, tok, [(task, samples[:1])], ["shadowkv_scaled"], tmp_path / "res2", model_name="tiny", progress=False)
    assert scaled["rank"].tolist() == [round(0.15625 * 2 * 16)]  # the row's rank is resolved for the model (H*d = 32)
    assert json.loads(scaled["config"][0])["rank"] == 0.15625
    assert len(load(tmp_path / "res")) == 2 * len(on)


def test_row_schema_and_values(tiny, samples, tmp_path):
    from shadowkv_lab.results import ROW_COLUMNS
    from shadowkv_lab.runner import run

    model, tok = tiny
    df = run(model, tok, [(FakeTask(), samples[:2])], ["full", "yakv"], tmp_path, model_name="tiny", progress=False)
    assert set(ROW_COLUMNS) <= set(df.columns)
    r = df.set_index(["sample_id", "method"])
    y, f = r.loc[("fake-1", "yakv")], r.loc[("fake-1", "full")]
    assert y.kind == "offload" and y["rank"] == -1 and y.chunk_size == 1 and y.sparse_budget == 0.03125
    assert y.budget_tokens == int(0.03125 * y.prompt_tokens) and pd_isna(f.budget_tokens)
    # head_dim 16: EDEN4-256 landmarks 2 bits + fp32 scale / 16; EDEN2-256 keys 4 bits + 32 / (2 heads x 16)
    assert y.landmark_bits == 4.0 and y.key_bits == 5.0 and y.value_bits == 5.0
    assert f.key_bits == 32.0 and pd_isna(f.landmark_bits)  # native = the model's fp32
    assert y.mem_device_bytes < f.mem_device_bytes and y.mem_offloaded_bytes > 0 == f.mem_offloaded_bytes
    assert y["mem_device:landmarks"] > 0 and y.mem_device_bytes_per_token_layer > 0
    assert y.meta_depth == 10 and y.meta_max_new_tokens == 5 and "meta_tags" not in df.columns
    assert json.loads(y.metrics) == {"hit": y.score, "chars": y.metric_chars} and y.metric_hit == y.score
    assert json.loads(y.config)["landmark_format"] == "higgs-4-256" and y.config_hash == json_hash(y.config)
    assert y.process_rank == 0 and y["dtype"] == "float32" and y["device"] == "cpu" and y.torch_version
    assert y.finish_reason == "length" and y.new_tokens == 5 and y.decode_s > 0 and y.prefill_s > 0


def pd_isna(v):
    import pandas as pd

    return pd.isna(v)


def json_hash(config_json):
    from shadowkv_lab.cache.config import OffloadConfig

    return OffloadConfig.from_dict(json.loads(config_json)).config_hash()


def test_resume_skips_done_cells(tiny, samples, tmp_path, monkeypatch):
    from shadowkv_lab.results import shards
    from shadowkv_lab.runner import run

    model, tok = tiny
    out = tmp_path / "res"
    task = FakeTask()
    calls = _count_prefills(monkeypatch)
    run(model, tok, [(task, samples[:2])], ["full"], out, model_name="tiny", progress=False)
    assert len(calls) == 2
    n_shards = len(shards(out))
    df = run(model, tok, [(task, samples[:3])], ["full", "yakv"], out, model_name="tiny", progress=False)
    assert len(calls) == 2 + 3  # sample 0/1 prefilled again only for yakv, sample 2 for both
    assert len(df) == 6 and not df.duplicated(["sample_id", "config_hash"]).any()
    assert len(load(out)) == 6
    before = len(shards(out))
    assert before > n_shards
    df2 = run(model, tok, [(task, samples[:3])], ["full", "yakv"], out, model_name="tiny", progress=False)
    assert len(calls) == 5 and len(shards(out)) == before and len(df2) == 6
    # a renamed method with the same config is the same cell; a different model name is a different cell
    assert len(done_keys(out)) == 6


def test_garbage_output_and_raising_scorer_score_zero(tiny, samples, tmp_path):
    from shadowkv_lab.runner import run

    class Raising(FakeTask):
        name = "raising"

        def score(self, prediction, gold):
            raise ValueError("scorer bug")

    model, tok = tiny
    with pytest.warns(UserWarning, match="scorer bug"):
        df = run(model, tok, [(Raising(), samples[:1])], ["full"], tmp_path, model_name="tiny", progress=False)
    assert df.score.tolist() == [0.0]


def test_garbage_output_real_task_scores_zero(tiny, tmp_path):
    tasks = pytest.importorskip("shadowkv_lab.tasks")
    if not hasattr(tasks, "get_task"):
        pytest.skip("tasks registry not available yet")
    from shadowkv_lab.runner import run

    model, tok = tiny
    task = tasks.get_task("text2json")
    df = run(model, tok, [task.name], ["full"], tmp_path, model_name="tiny", n=1, tokens=1500, max_new_tokens=8, progress=False)
    assert len(df) == 1 and df.score[0] == 0.0 and df.finish_reason[0] == "length"


def test_record_writes_attention_rows(tiny, samples, tmp_path):
    from shadowkv_lab.results import load_records
    from shadowkv_lab.runner import run

    model, tok = tiny
    run(model, tok, [(FakeTask(), samples[:1])], ["full", "yakv"], tmp_path, model_name="tiny", record=True, progress=False)
    rec = load_records(tmp_path)
    assert len(rec) and set(rec.method) == {"yakv"}  # exact attention has nothing to record
    assert {"recall", "mass", "err_selection", "layer", "head", "step"} <= set(rec.columns)
    assert set(rec.sample_id) == {"fake-0"} and rec.model.unique().tolist() == ["tiny"]


def test_dry_run_prints_grid_and_runs_nothing(tiny, samples, tmp_path, capsys):
    from shadowkv_lab.runner import run

    model, tok = tiny
    task = FakeTask()
    run(model, tok, [(task, samples[:1])], ["full"], tmp_path, model_name="tiny", progress=False)
    capsys.readouterr()
    plan = run(model, tok, [(task, samples[:3])], ["full", "yakv"], tmp_path, model_name="tiny", dry_run=True)
    text = capsys.readouterr().out
    assert "6 total, 1 done, 5 to run" in text and "prefill tokens" in text and "decode tokens" in text
    assert plan.to_run.sum() == 5 and plan.prefill_tokens.gt(0).sum() == 3
    assert plan.decode_tokens_max.sum() == sum(task.max_new_tokens_for(s) * (2 - (i == 0)) for i, s in enumerate(samples[:3]))
    assert len(load(tmp_path)) == 1


def test_unknown_method_lists_presets(tiny, samples, tmp_path):
    from shadowkv_lab.runner import run

    model, tok = tiny
    with pytest.raises(ValueError, match="unknown method 'nope'.*yakv"):
        run(model, tok, [(FakeTask(), samples)], ["full", "nope"], tmp_path, model_name="tiny")


def test_cli_errors(tmp_path, capsys):
    from shadowkv_lab.cli import main

    base = ["run", "--model", "tiny-qwen2", "--task", "text2json", "--out", str(tmp_path)]
    assert main(base + ["--methods", "full,bogus"]) == 2
    err = capsys.readouterr().err
    assert "unknown method(s) bogus" in err and "shadowkv" in err
    with pytest.raises(SystemExit):  # argparse: required --methods missing
        main(base)
    assert main(base + ["--methods", "full", "--batch-size", "0"]) == 2
    tasks = pytest.importorskip("shadowkv_lab.tasks")
    if not hasattr(tasks, "get_task"):
        pytest.skip("tasks registry not available yet")
    capsys.readouterr()
    assert main(["run", "--model", "tiny-qwen2", "--task", "text2json,nosuchtask", "--methods", "full", "--out", str(tmp_path)]) == 2
    assert "nosuchtask" in capsys.readouterr().err
    assert main(["run", "--model", "tiny-gpt2", "--task", "text2json", "--out", str(tmp_path), "--methods", "full"]) == 2
    assert "tiny-qwen2" in capsys.readouterr().err


def test_cli_dry_run_tiny(tmp_path, capsys):
    tasks = pytest.importorskip("shadowkv_lab.tasks")
    if not hasattr(tasks, "get_task"):
        pytest.skip("tasks registry not available yet")
    from shadowkv_lab.cli import main

    rc = main(["run", "--model", "tiny-qwen2", "--task", "text2json", "--n", "2", "--tokens", "1500", "--methods", "full,yakv",
               "--out", str(tmp_path / "res"), "--dry-run"])
    assert rc == 0 and "4 total, 0 done, 4 to run" in capsys.readouterr().out
    assert not (tmp_path / "res").exists()


def test_cli_refills_by_default(tmp_path, monkeypatch):
    import shadowkv_lab.runner as runner
    from shadowkv_lab.cli import main

    seen = []
    monkeypatch.setattr(runner, "run", lambda *a, **k: seen.append(k["refill"]))
    args = ["run", "--model", "tiny-qwen2", "--task", "text2json", "--n", "1", "--methods", "full", "--out", str(tmp_path)]
    assert main(args) == 0 and main([*args, "--no-refill"]) == 0 and main([*args, "--refill"]) == 0
    assert seen == [True, False, True]


def test_bench_runner_smoke(tmp_path, capsys):
    """benchmarks/bench_runner.py at tiny size on CPU: runs both paths and finds identical results."""
    import importlib.util
    from pathlib import Path

    pytest.importorskip("shadowkv_lab.tasks", reason="tasks package not available")
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_runner.py"
    spec = importlib.util.spec_from_file_location("bench_runner", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "bench.json"
    rc = bench.main(["--model", "tiny-qwen2", "--task", "ruler_niah_single", "--n", "2", "--tokens", "600",
                     "--methods", "full,yakv", "--max-new-tokens", "4", "--out-json", str(out), "-q"])
    res = json.loads(out.read_text())
    assert rc == 0 and res["identical_tokens"] and res["identical_scores"]
    assert res["runner"]["prefills"] == 2 and res["naive"]["prefills"] == 4 and res["runner"]["cells"] == 4
    r = res["runner"]  # what sets the rate: steps, rows a step, time a step
    assert 0 < r["decode_calls"] <= r["decode_steps"] and r["live_rows_mean"] == r["decode_tokens"] / r["decode_steps"]
    assert 1 <= r["live_rows_mean"] <= 4 and r["step_ms"] == pytest.approx(1e3 * r["decode_s"] / r["decode_steps"])
    assert res["naive"]["live_rows_mean"] == 1.0  # one row at a time
    assert "speedup" in capsys.readouterr().out
    from shadowkv_lab.results import read_bench_rows

    rows = read_bench_rows(tmp_path / "bench.rows.csv")  # the same numbers as benchmark rows
    got = rows.set_index(["table", "metric"])["value"]
    assert got["runner", "prefills"] == 2 and got["naive", "prefills"] == 4 and got["comparison", "identical_scores"] == 1.0
    assert got["runner", "decode_steps"] == r["decode_steps"] and got["runner", "live_rows_mean"] == r["live_rows_mean"]
    assert set(rows["benchmark"]) == {"bench_runner"} and rows["run"].nunique() == 1 and (rows["context"] == 600).all()


def test_recording_is_part_of_the_cell_key(tiny, samples, tmp_path, monkeypatch):
    """One store for recorded and plain runs: a recorded request reruns cells stored without records (full attention
    records nothing and is reused); a plain request reuses recorded cells."""
    from shadowkv_lab.results import load_records
    from shadowkv_lab.runner import run

    model, tok = tiny
    grid = [(FakeTask(), samples[:1])]
    calls = _count_prefills(monkeypatch)
    plain = run(model, tok, grid, ["full", "yakv"], tmp_path, model_name="tiny", progress=False)
    assert not plain.recorded.any() and len(calls) == 1
    rec = run(model, tok, grid, ["full", "yakv"], tmp_path, model_name="tiny", record=True, progress=False)
    assert len(calls) == 2 and rec.set_index("method").recorded.to_dict() == {"full": False, "yakv": True}
    assert set(load_records(tmp_path).method) == {"yakv"}
    assert rec.set_index("method").token_ids.to_dict() == plain.set_index("method").token_ids.to_dict()
    again = run(model, tok, grid, ["full", "yakv"], tmp_path, model_name="tiny", progress=False)
    assert len(calls) == 2 and len(again) == 2 and again.set_index("method").recorded.to_dict() == {"full": False, "yakv": True}
    assert len(load(tmp_path, all_rows=True)) == 3


def _record_waves(monkeypatch, runner, kind: str) -> list:
    """Spy on runner._next_wave: one (rows, their estimated bytes of `kind` ("device" or "host"), the limit it was
    given) per wave."""
    waves, real = [], runner._next_wave

    def spy(queue, start, batch_size, free, fp, **kw):
        wave = real(queue, start, batch_size, free, fp, **kw)
        need = sum((fp.row if kind == "device" else fp.host)(it, c) for it, c in wave)
        waves.append((len(wave), need, free if kind == "device" else kw.get("host_free")))
        return wave

    monkeypatch.setattr(runner, "_next_wave", spy)
    return waves


def test_waves_fit_a_fake_free_memory_budget(tiny, samples, tmp_path, monkeypatch):
    """--batch-size is an upper bound: with a free-memory budget that fits about two rows, every wave fits it, the
    tokens are those of the unbounded run, and a row that cannot fit alone names its bytes and the free memory."""
    import shadowkv_lab.runner as runner

    model, tok = tiny
    task = FakeTask()
    waves = _record_waves(monkeypatch, runner, "device")
    wide = runner.run(model, tok, [(task, samples[:2])], METHODS, tmp_path / "a", model_name="tiny", batch_size=8, progress=False)
    assert [n for n, _, _ in waves] == [8]
    fp = runner._Footprint(model, tok, record=False)
    it = runner._Item(task, samples[1], task.max_new_tokens_for(samples[1]), [])
    row = max(fp.row(it, runner.resolve(m)) for m in METHODS)
    budget = int((2 * row + fp.prefill(it, [runner.resolve(m) for m in METHODS])) / runner.HEADROOM) + 1
    waves.clear()
    narrow = runner.run(model, tok, [(task, samples[:2])], METHODS, tmp_path / "b", model_name="tiny", batch_size=8,
                        progress=False, free_memory=budget)
    assert len(waves) >= 3 and all(1 <= n <= 8 for n, _, _ in waves) and max(n for n, _, _ in waves) < 8
    assert all(need <= runner.HEADROOM * free for _, need, free in waves)
    key = ["sample_id", "method"]
    a, b = wide.sort_values(key).reset_index(drop=True), narrow.sort_values(key).reset_index(drop=True)
    assert a.token_ids.tolist() == b.token_ids.tolist()
    assert set(b.batch_rows) == {n for n, _, _ in waves} - {0} or set(b.batch_rows) <= {n for n, _, _ in waves}
    with pytest.raises(runner.RowMemoryError, match=r"fake/fake-0/full needs about .* bytes.* but .* \(1,000 bytes\) are free"):
        runner.run(model, tok, [(task, samples[:1])], ["full"], tmp_path / "c", model_name="tiny", free_memory=1000,
                   progress=False)
    for bad in (0, -5, 1.5, True, "1GB"):
        with pytest.raises(ValueError, match="free_memory="):
            runner.run(model, tok, [(task, samples[:1])], ["full"], tmp_path / "d", model_name="tiny", free_memory=bad)


def test_free_device_bytes_on_cpu_is_available_ram():
    import psutil
    import torch

    from shadowkv_lab.runner import free_device_bytes

    got = free_device_bytes(torch.device("cpu"))
    assert isinstance(got, int) and 0 < got <= psutil.virtual_memory().total


def test_row_footprint_bounds_the_built_cache():
    """The estimate made before building covers what the built cache's memory report holds on the device."""
    import dataclasses

    import torch

    from shadowkv_lab.cache.memory import row_footprint_bytes
    from shadowkv_lab.cache.presets import PRESETS
    from shadowkv_lab.generation import build_cache, prefill
    from shadowkv_lab.testing import tiny_model

    model, _ = tiny_model("qwen2", seed=1, dtype=torch.bfloat16)
    st = prefill(model, torch.randint(3, 384, (700,), generator=torch.Generator().manual_seed(0)))
    H, L, d = st.k_pre[0].shape
    for name in ("full", "shadowkv", "yakv", "oracle", "shadowkv_fullkeys", "yakv_exactkv", "yakv_lut"):
        for offload in (True, False):
            for record in (False, True):
                cfg = dataclasses.replace(PRESETS[name], offload=offload)
                cache = build_cache(model, st, cfg, record=record)
                rep = cache.memory_report()
                held = rep.total("device", packed=False) + rep.total("analysis", packed=False)
                held += 0 if offload else rep.total("offloaded", packed=False)
                kw = dict(n_layers=len(cache.layers), n_kv_heads=H, head_dim=d, prompt_len=L, new_tokens=32,
                          dtype_bytes=2, record=record, n_q_heads=model.config.num_attention_heads)
                # the GPU's step; the torch backend adds yakv_lut's fp32 landmarks (backend None: the larger)
                est = row_footprint_bytes(cfg, backend="triton", **kw)
                assert held <= est <= 5 * held, (name, offload, record, held, est)
                assert est <= row_footprint_bytes(cfg, **kw) == row_footprint_bytes(cfg, backend="torch", **kw)


def test_row_host_bytes_is_the_built_cache_offloaded_stores():
    """The host estimate made before building bounds what the built cache's memory report holds offloaded, and is
    tight (it counts the whole prompt; the resident local window is not offloaded): values for ShadowKV, exact or
    quantized keys and values for the YAKV family, nothing for full attention or a cache kept on the device."""
    import dataclasses

    import torch

    from shadowkv_lab.cache.memory import row_host_bytes
    from shadowkv_lab.cache.presets import PRESETS
    from shadowkv_lab.generation import build_cache, prefill
    from shadowkv_lab.testing import tiny_model

    model, _ = tiny_model("qwen2", seed=1, dtype=torch.bfloat16)
    st = prefill(model, torch.randint(3, 384, (700,), generator=torch.Generator().manual_seed(0)))
    H, L, d = st.k_pre[0].shape
    for name in ("full", "shadowkv", "yakv", "oracle", "shadowkv_fullkeys", "yakv_exactkv", "yakv_centred"):
        for offload in (True, False):
            cfg = dataclasses.replace(PRESETS[name], offload=offload)
            held = build_cache(model, st, cfg).memory_report().total("offloaded", packed=False) if offload else 0
            est = row_host_bytes(cfg, n_layers=model.config.num_hidden_layers, n_kv_heads=H, head_dim=d, prompt_len=L,
                                 dtype_bytes=2)
            window = (cfg.local_budget + cfg.chunk_size) / L if cfg.kind != "full" else 0
            assert held <= est <= held / (1 - window) + 1, (name, offload, held, est)
            assert (est > 0) == (offload and cfg.kind != "full")
    assert row_host_bytes(PRESETS["yakv_exactkv"], n_layers=28, n_kv_heads=2, head_dim=128, prompt_len=16384,
                          dtype_bytes=2) == 28 * 2 * 16384 * 256 * 2  # the 1.5B at 16k: 470 MB a row


def test_waves_fit_a_fake_host_memory_budget(tiny, samples, tmp_path, monkeypatch):
    """Offloaded stores are sized against host RAM too (a wave of exact-K/V rows once took a 128 GB host down): with a
    host budget for about two rows, every wave fits it, the tokens are unchanged, and a row whose stores cannot fit
    alone names its host bytes."""
    import shadowkv_lab.runner as runner

    model, tok = tiny
    task = FakeTask()
    methods = ["yakv_exactkv", "shadowkv_fullkeys", "full"]
    wide = runner.run(model, tok, [(task, samples[:2])], methods, tmp_path / "a", model_name="tiny", batch_size=8,
                      progress=False)
    waves = _record_waves(monkeypatch, runner, "host")
    fp = runner._Footprint(model, tok, record=False)
    it = runner._Item(task, samples[1], task.max_new_tokens_for(samples[1]), [])
    row = max(fp.host(it, runner.resolve(m)) for m in methods)
    assert row > 0 and fp.host(it, runner.resolve("full")) == 0
    budget = int(2 * row / runner.HEADROOM) + 1
    narrow = runner.run(model, tok, [(task, samples[:2])], methods, tmp_path / "b", model_name="tiny", batch_size=8,
                        progress=False, free_memory=2**40, host_memory=budget)
    assert len(waves) >= 2 and max(n for n, _, _ in waves) < 6
    assert all(need <= runner.HEADROOM * free for _, need, free in waves if free is not None)
    key = ["sample_id", "method"]
    a, b = wide.sort_values(key).reset_index(drop=True), narrow.sort_values(key).reset_index(drop=True)
    assert a.token_ids.tolist() == b.token_ids.tolist()
    with pytest.raises(runner.RowMemoryError, match=r"yakv_exactkv needs about .* GiB of host memory .*offloaded stores"):
        runner.run(model, tok, [(task, samples[:1])], ["yakv_exactkv"], tmp_path / "c", model_name="tiny",
                   free_memory=2**40, host_memory=1000, progress=False)
    with pytest.raises(ValueError, match="host_memory="):
        runner.run(model, tok, [(task, samples[:1])], ["full"], tmp_path / "d", model_name="tiny", host_memory=0)


def test_free_host_bytes_is_available_ram():
    import psutil

    from shadowkv_lab.runner import free_host_bytes

    got = free_host_bytes()
    assert isinstance(got, int) and 0 < got <= psutil.virtual_memory().total


def test_dry_run_estimates_gpu_time_from_measured_rates(tiny, samples, tmp_path, capsys):
    import json

    from shadowkv_lab.runner import RATES, measured_rates, run

    model, tok = tiny
    task = FakeTask()
    rates = json.load(open(RATES))
    rates["runner"].update(prefill_tokens=1000, prefill_s=1.0, decode_tok_s=10.0)  # 1,000 prefill tok/s, 10 decode tok/s
    path = tmp_path / "rates.json"
    path.write_text(json.dumps(rates))
    plan = run(model, tok, [(task, samples[:2])], ["full", "yakv"], tmp_path / "res", model_name="tiny", dry_run=True,
               rates=str(path))
    text = capsys.readouterr().out
    most = plan.prefill_tokens.sum() / 1000 + plan.decode_tokens_max.sum() / 10
    expected = plan.prefill_tokens.sum() / 1000 + plan.decode_tokens_expected.sum() / 10
    assert "estimated GPU time from measured rates (rates.json: NVIDIA H100" in text and "decode 10.0 tok/s" in text
    assert f"  total: {expected / 60:,.1f} min expected, at most {most / 60:,.1f} min" in text and "  fake: " in text
    # a task without measured answers counts every row to its cap either way
    assert (plan.decode_tokens_expected == plan.decode_tokens_max).all() and (plan.answer_tokens == plan.cap).all()
    assert measured_rates()["decode_tok_s"] > 0  # the committed measurement loads
    # the measured grid kept values on the device (runner_h100.json: --on-device); this run offloads them: said so
    assert measured_rates(str(path))["on_device"] is True and "read these times as a lower bound" in text
    run(model, tok, [(task, samples[:2])], ["full", "yakv"], tmp_path / "res", model_name="tiny", dry_run=True,
        rates=str(path), on_device=True)
    assert "lower bound" not in capsys.readouterr().out
    with pytest.raises(FileNotFoundError, match="no measured rates at .*nope.json"):
        run(model, tok, [(task, samples[:1])], ["full"], tmp_path / "res", model_name="tiny", dry_run=True,
            rates=str(tmp_path / "nope.json"))


def test_dry_run_takes_the_rates_measured_with_its_placement_of_values(tiny, samples, tmp_path, monkeypatch, capsys):
    import json

    from shadowkv_lab import runner

    model, tok = tiny
    task = FakeTask()
    rates = json.load(open(runner.RATES))
    rates["args"]["on_device"] = False
    rates["runner"].update(decode_tok_s=7.0)
    path = tmp_path / "offloaded.json"
    path.write_text(json.dumps(rates))
    # no reproduction rows: their own measured rate (measured_grid_rate) would replace the benchmark's
    monkeypatch.setattr(runner, "ANSWERS", str(tmp_path / "none.parquet"))
    for have in (False, True):
        monkeypatch.setattr(runner, "RATES_OFFLOADED", str(path if have else tmp_path / "none.json"))
        for on_device in (False, True):
            runner.run(model, tok, [(task, samples[:1])], ["full"], tmp_path / "res", model_name="tiny", dry_run=True,
                       on_device=on_device)
            text = capsys.readouterr().out
            offloaded_rates = have and not on_device
            assert ("(offloaded.json:" in text) == offloaded_rates and ("decode 7.0 tok/s" in text) == offloaded_rates
            assert ("lower bound" in text) == (not on_device and not have)  # no offloaded measurement to read


def test_dry_run_with_refill_on_the_device_takes_the_refilled_measurement(tiny, samples, tmp_path, monkeypatch, capsys):
    import json

    from shadowkv_lab import runner

    model, tok = tiny
    rates = json.load(open(runner.RATES_REFILL))
    assert rates["args"]["refill"] is True and rates["args"]["on_device"] is True  # the committed file is what it says
    rates["runner"].update(decode_tok_s=9.0)
    path = tmp_path / "refilled.json"
    path.write_text(json.dumps(rates))
    monkeypatch.setattr(runner, "RATES_REFILL", str(path))
    monkeypatch.setattr(runner, "ANSWERS", str(tmp_path / "none.parquet"))  # no measured grid rows either
    for on_device in (False, True):
        for refill in (False, True):
            runner.run(model, tok, [(FakeTask(), samples[:1])], ["full"], tmp_path / "res", model_name="tiny",
                       dry_run=True, on_device=on_device, refill=refill)
            text = capsys.readouterr().out
            used = on_device and refill  # offloaded grids have their own measurement, refilled or not
            assert ("(refilled.json:" in text) == used and ("decode 9.0 tok/s" in text) == used
            assert ("rows, refilled:" in text) == used


def test_prompts_past_the_context_fail_or_are_skipped(tiny, samples, tmp_path, monkeypatch, capsys):
    """A prompt plus cap beyond config.max_position_embeddings is never run: an error names the samples and their
    token counts; over_context="skip" runs the rest and lists the dropped ones; the dry run applies the same rule."""
    from shadowkv_lab.generation import encode_prompt
    from shadowkv_lab.runner import ContextLengthError, run

    model, tok = tiny
    task = FakeTask()
    lens = [len(encode_prompt(tok, s.prompt)) + task.max_new_tokens_for(s) for s in samples]
    limit = sorted(lens)[1]  # the two shortest fit
    monkeypatch.setattr(model.config, "max_position_embeddings", limit)
    over = [s.id for s, n in zip(samples, lens) if n > limit]
    with pytest.raises(ContextLengthError) as e:
        run(model, tok, [(task, samples)], ["full"], str(tmp_path / "a"), model_name="tiny", progress=False)
    assert all(i in str(e.value) for i in over) and f"{limit:,}" in str(e.value)
    assert not (tmp_path / "a").exists() or load(str(tmp_path / "a")).empty
    with pytest.raises(ValueError, match="over_context='drop'"):
        run(model, tok, [(task, samples)], ["full"], str(tmp_path / "a"), model_name="tiny", over_context="drop")
    plan = run(model, tok, [(task, samples)], ["full"], str(tmp_path / "b"), model_name="tiny", dry_run=True,
               over_context="skip")
    assert sorted(plan.sample_id) == sorted(s.id for s in samples if s.id not in over)
    df = run(model, tok, [(task, samples)], ["full"], str(tmp_path / "b"), model_name="tiny", progress=False,
             over_context="skip")
    assert sorted(df.sample_id) == sorted(s.id for s in samples if s.id not in over)
    assert "skipped: 2 of 4 samples" in capsys.readouterr().out


def _resumed(first) -> int:
    """Rows of a decode call that resume from earlier tokens (they pass every token so far)."""
    return sum(isinstance(f, list) and len(f) > 1 for f in first)


def _spy_decode(monkeypatch, what) -> list:
    """Replace runner.decode by itself plus a log: what(caches, first_tokens, kwargs) of every call."""
    import shadowkv_lab.runner as runner

    calls, real = [], runner.decode

    def spy(model_, caches, first, caps, stop_ids, **kw):
        calls.append(what(caches, first, kw))
        return real(model_, caches, first, caps, stop_ids, **kw)

    monkeypatch.setattr(runner, "decode", spy)
    return calls


def test_refill_puts_queued_rows_beside_unfinished_ones_with_the_same_tokens(tiny, samples, tmp_path, monkeypatch):
    """refill: a decode call returns once half of its rows have finished; the finished rows are written, queued rows
    join the unfinished ones in the next call (resumed from their tokens so far), every cell's tokens equal those of
    waves that decode to their last row, and each sample is still prefilled once."""
    import shadowkv_lab.runner as runner

    model, tok = tiny
    task = FakeTask()
    three = samples[:3]  # caps 6, 5, 6: in a call of samples 0 and 1, sample 1's rows stop first
    whole = runner.run(model, tok, [(task, three)], METHODS, tmp_path / "a", model_name="tiny", batch_size=8, progress=False,
                       refill=False)
    prefills = _count_prefills(monkeypatch)
    calls = _spy_decode(monkeypatch, lambda caches, first, kw: (_resumed(first), len(first), kw["until_active"]))
    refilled = runner.run(model, tok, [(task, three)], METHODS, tmp_path / "b", model_name="tiny", batch_size=8,
                          progress=False, refill=True)
    assert len(prefills) == len(three)
    assert calls[0] == (0, 8, 4)  # 8 new rows; return at 4 still generating while rows are queued
    assert any(resumed and resumed < rows for resumed, rows, _ in calls[1:]), calls  # resumed rows beside new ones
    assert calls[-1][2] == 0  # nothing queued: the last call decodes to its last row
    key = ["sample_id", "method"]
    a, b = whole.sort_values(key).reset_index(drop=True), refilled.sort_values(key).reset_index(drop=True)
    assert len(b) == len(three) * len(METHODS)
    assert a.token_ids.tolist() == b.token_ids.tolist() and a.finish_reason.tolist() == b.finish_reason.tolist()
    assert (b.decode_s > 0).all()
    with pytest.raises(ValueError, match="refill="):
        runner.run(model, tok, [(task, three)], METHODS, tmp_path / "c", model_name="tiny", refill="yes")


def test_long_decode_calls_store_finished_rows_as_they_go_with_the_same_tokens(tiny, samples, tmp_path, monkeypatch):
    """write_every_s: a decode call returns (after that many seconds) once a row has finished in it, so finished rows
    reach the store before the call's last row stops; without refill no queued row joins the unfinished ones, and
    every cell's tokens equal those of calls that run to their last row."""
    import shadowkv_lab.runner as runner
    from shadowkv_lab.results import shards

    model, tok = tiny
    task = FakeTask()
    three = samples[:3]
    whole = runner.run(model, tok, [(task, three)], METHODS, tmp_path / "a", model_name="tiny", batch_size=8,
                       progress=False, write_every_s=None, refill=False)
    calls = _spy_decode(monkeypatch, lambda caches, first, kw: (_resumed(first), len(first), kw["return_after_s"]))
    often = runner.run(model, tok, [(task, three)], METHODS, tmp_path / "b", model_name="tiny", batch_size=8,
                       progress=False, write_every_s=1e-9, refill=False)
    assert len(shards(tmp_path / "b")) > len(shards(tmp_path / "a"))
    assert all(after == 1e-9 for _, _, after in calls)
    assert any(resumed for resumed, _, _ in calls), calls  # a call returned early and its unfinished rows went on
    assert all(resumed in (0, rows) for resumed, rows, _ in calls), calls  # resumed rows never beside new ones
    key = ["sample_id", "method"]
    a, b = whole.sort_values(key).reset_index(drop=True), often.sort_values(key).reset_index(drop=True)
    assert a.token_ids.tolist() == b.token_ids.tolist() and a.finish_reason.tolist() == b.finish_reason.tolist()
    for bad in (0, -1, "60", True):
        with pytest.raises(ValueError, match="write_every_s="):
            runner.run(model, tok, [(task, three)], METHODS, tmp_path / "c", model_name="tiny", write_every_s=bad)


def test_rows_that_cannot_be_replayed_decode_in_calls_of_their_own(tiny, samples, tmp_path, monkeypatch):
    """A wave's rows split by cache.batched.replayable (one recorded row, or one format the kernels lack, would make
    every row's step eager): each class decodes in its own call, and every cell's tokens equal those of one call."""
    import shadowkv_lab.runner as runner

    model, tok = tiny
    task = FakeTask()
    whole = runner.run(model, tok, [(task, samples[:2])], METHODS, tmp_path / "a", model_name="tiny", batch_size=8,
                       progress=False)
    assert whole.batch_rows.eq(len(METHODS) * 2).all()  # on a CPU nothing replays: one class, one call
    calls = _spy_decode(monkeypatch, lambda caches, first, kw: sorted({c.config.name for c in caches}))
    monkeypatch.setattr(runner, "replayable", lambda cache: cache.config.name == METHODS[0])
    split = runner.run(model, tok, [(task, samples[:2])], METHODS, tmp_path / "b", model_name="tiny", batch_size=8,
                       progress=False)
    assert [METHODS[0]] in calls and sorted(METHODS[1:]) in calls, calls
    key = ["sample_id", "method"]
    a, b = whole.sort_values(key).reset_index(drop=True), split.sort_values(key).reset_index(drop=True)
    assert a.token_ids.tolist() == b.token_ids.tolist()
    assert b[b.method == METHODS[0]].batch_rows.eq(2).all() and b.batch_methods[b.method == METHODS[0]].eq(METHODS[0]).all()


def test_decode_resumes_a_row_from_its_tokens_so_far(tiny, samples):
    """decode(until_active=...) returns unfinished rows (finish_reason None); passing their tokens back goes on as if
    the call had never stopped. Tokens that do not match the cache's length are refused."""
    from shadowkv_lab.generation import build_cache, decode, encode_prompt, prefill

    model, tok = tiny
    st = [prefill(model, encode_prompt(tok, s.prompt)) for s in samples[:2]]
    first = [int(s.first_logits.argmax()) for s in st]

    def fresh():
        return [build_cache(model, s, runner_cfg) for s in st]

    from shadowkv_lab.cache.presets import resolve

    runner_cfg = resolve("shadowkv_fullkeys")
    once = decode(model, fresh(), first, [7, 4], set())
    caches = fresh()
    part = decode(model, caches, first, [7, 4], set(), until_active=1)
    assert part[1].finish_reason == "length" and part[0].finish_reason is None and len(part[0].token_ids) == 4
    rest = decode(model, caches[:1], [part[0].token_ids], [7], set())
    assert rest[0].token_ids == once[0].token_ids and rest[0].finish_reason == once[0].finish_reason == "length"
    with pytest.raises(ValueError, match="row 0: 2 tokens given but its cache holds 0 generated tokens"):
        decode(model, fresh()[:1], [[first[0], 5]], [7], set())
    with pytest.raises(ValueError, match="until_active="):
        decode(model, fresh()[:1], first[:1], [7], set(), until_active=-1)
    caches = fresh()
    part = decode(model, caches, first, [7, 4], set(), return_after_s=0)  # returns at the first finished row
    assert part[1].finish_reason == "length" and part[0].finish_reason is None and len(part[0].token_ids) == 4
    assert decode(model, caches[:1], [part[0].token_ids], [7], set())[0].token_ids == once[0].token_ids
    with pytest.raises(ValueError, match="return_after_s="):
        decode(model, fresh()[:1], first[:1], [7], set(), return_after_s=-1)


def test_a_cell_whose_cache_build_raises_is_named_and_the_rest_are_stored(tiny, samples, tmp_path, monkeypatch):
    """One failed build (a cuSOLVER SVD that did not converge, say) costs only its cell: the other cells are stored
    with the tokens they get alone, run() then raises naming the cell, and a rerun runs just that cell."""
    import shadowkv_lab.runner as runner

    model, tok = tiny
    task = FakeTask()
    ref = runner.run(model, tok, [(task, samples[:2])], METHODS, tmp_path / "ref", model_name="tiny", progress=False)
    real = runner.build_cache
    bad_len = runner.encode_prompt(tok, samples[1].prompt).shape[-1]

    def flaky(model_, state, cfg, record=False):
        if cfg.name == "yakv" and state.input_ids.shape[-1] == bad_len:
            raise RuntimeError("linalg.svd: The algorithm failed to converge")
        return real(model_, state, cfg, record=record)

    monkeypatch.setattr(runner, "build_cache", flaky)
    out = tmp_path / "res"
    with pytest.raises(runner.CellsFailed, match=r"(?s)1 cell\(s\) failed.*fake/fake-1/yakv: RuntimeError: linalg.svd") as e:
        runner.run(model, tok, [(task, samples[:2])], METHODS, out, model_name="tiny", batch_size=3, progress=False)
    assert len(e.value.cells) == 1
    got = load(out)
    assert len(got) == 2 * len(METHODS) - 1 and not ((got.sample_id == "fake-1") & (got.method == "yakv")).any()
    key = ["sample_id", "method"]
    want = ref.merge(got[key], on=key).sort_values(key)
    assert want.token_ids.tolist() == got.sort_values(key).token_ids.tolist()

    monkeypatch.setattr(runner, "build_cache", real)
    df = runner.run(model, tok, [(task, samples[:2])], METHODS, out, model_name="tiny", progress=False)
    assert len(df) == 2 * len(METHODS)
    row = df[(df.sample_id == "fake-1") & (df.method == "yakv")]
    assert row.token_ids.tolist() == ref[(ref.sample_id == "fake-1") & (ref.method == "yakv")].token_ids.tolist()


def test_dry_run_of_a_recorded_grid_uses_the_recorded_rate(tiny, samples, tmp_path, capsys):
    """A recorded grid's estimate names the recorded rate it used (the committed reproduction's recorded rows), and
    its plan marks the cells recorded; an unrecorded grid's does not."""
    from shadowkv_lab.runner import measured_recorded_rate, run

    model, tok = tiny
    rec = measured_recorded_rate()
    assert rec is not None and rec["decode_tok_s"] > 0  # the committed export holds recorded rows
    plan = run(model, tok, [(FakeTask(), samples[:2])], ["shadowkv"], tmp_path / "res", model_name="tiny", dry_run=True,
               record=True)
    assert plan.recorded.all()
    assert f"recorded rows decode at {rec['decode_tok_s']:,.1f} tok/s" in capsys.readouterr().out
    plan = run(model, tok, [(FakeTask(), samples[:2])], ["shadowkv"], tmp_path / "res", model_name="tiny", dry_run=True)
    assert not plan.recorded.any() and "recorded rows" not in capsys.readouterr().out


def test_decode_shares_add_up_to_the_decode_calls_wall_time(tiny, samples, tmp_path, monkeypatch):
    """Each row carries its share of the wall time of the decode calls it ran in (split by the tokens each row made
    there), so over a run's rows the shares add up to the time spent decoding: a grid's measured rate."""
    import time as _time

    import shadowkv_lab.runner as runner

    model, tok = tiny
    task = FakeTask()
    spent, real = [], runner.decode

    def timed(*a, **kw):
        t0 = _time.perf_counter()
        out = real(*a, **kw)
        spent.append(_time.perf_counter() - t0)
        return out

    monkeypatch.setattr(runner, "decode", timed)
    df = runner.run(model, tok, [(task, samples[:3])], METHODS, tmp_path / "r", model_name="tiny", batch_size=4,
                    refill=True, progress=False)
    assert len(spent) > 1 and len(df) == 3 * len(METHODS)
    assert df["decode_share_s"].sum() == pytest.approx(sum(spent), rel=0.02, abs=0.01)
    ran = df[df["new_tokens"] > 1]
    assert (ran["decode_share_s"] > 0).all()


def test_dry_run_takes_the_decode_rate_of_stored_grids_with_its_placement(tiny, samples, tmp_path, monkeypatch, capsys):
    """Rows that carry their share of the decode calls' time give the grid's own decode rate; the dry run prefers it
    (for the run's placement of values) to the runner benchmark's, whose prefill rate it keeps."""
    from shadowkv_lab import runner

    model, tok = tiny
    task = FakeTask()
    df = runner.run(model, tok, [(task, samples[:2])], ["full", "yakv"], tmp_path / "grid", model_name="tiny",
                    progress=False)  # configs keep offload=True (the placement is a config field)
    export = tmp_path / "cells.parquet"
    df.to_parquet(export)
    monkeypatch.setattr(runner, "ANSWERS", str(export))
    assert runner.measured_grid_rate(str(export), on_device=False) is None  # 4 rows: a spot check, not a grid
    monkeypatch.setattr(runner, "GRID_RATE_MIN_ROWS", 4)
    got = runner.measured_grid_rate(str(export), on_device=False)
    ran = df[df.new_tokens > 1]
    assert got["decode_tok_s"] == pytest.approx((ran.new_tokens - 1).sum() / ran.decode_share_s.sum())
    assert runner.measured_grid_rate(str(export), on_device=True) is None  # no row ran with values on the device
    runner.run(model, tok, [(task, samples[2:3])], ["full"], tmp_path / "new", model_name="tiny", dry_run=True)
    text = capsys.readouterr().out
    assert f"decode {got['decode_tok_s']:,.1f} tok/s" in text and "decode: 4 rows of cells.parquet" in text
    assert "lower bound" not in text  # the rate was measured with this placement
    runner.run(model, tok, [(task, samples[2:3])], ["full"], tmp_path / "new", model_name="tiny", dry_run=True,
               on_device=True)
    assert "rows of cells.parquet" not in capsys.readouterr().out
