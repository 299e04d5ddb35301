"""benchmarks/export_results.py: stores whose tasks give a meta column different types export as one Parquet file."""

import importlib.util
import sys
from pathlib import Path

import pandas as pd
import pytest

from shadowkv_lab.cache.presets import resolve
from shadowkv_lab.results import ResultsWriter, make_row

ROOT = Path(__file__).resolve().parents[1]
MEM = {"device_bytes": 1000, "offloaded_bytes": 0, "device_bytes_per_token_layer": 5.0, "offloaded_bytes_per_token_layer": 0.0}


def _module(name):
    """A benchmarks/ script as a module (the scripts import the package and each other from the repository)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
    spec.loader.exec_module(mod)
    return mod


def _export_module():
    return _module("export_results")


def _row(task, sample, method, score, seed, tokens=16384):
    config = method if not isinstance(method, str) else resolve(method)
    return make_row(model="m", task=task, sample_id=sample, config=config, primary_metric="score",
                    metrics={"score": score}, prediction="p", prompt_tokens=100, new_tokens=3, finish_reason="stop",
                    n_kv_heads=2, head_dim=64, dtype_bits=16, memory=MEM, prefill_s=0.1, decode_s=0.2,
                    meta={"seed": seed, "target_tokens": tokens})


def test_mixed_type_meta_columns_export_as_strings(tmp_path):
    store = tmp_path / "store"
    # one task's sample seed is an int, another's a "seed:index" string: one shard each, as two waves write them
    ResultsWriter(store).write([_row("ruler_niah_single", f"s{i}", m, 100.0, 200) for i in range(3) for m in ("full", "shadowkv")])
    ResultsWriter(store).write([_row("text2json", f"t{i}", m, 40.0 + i, f"200:{i}") for i in range(3) for m in ("full", "shadowkv")])
    r = _export_module().export([str(store)], tmp_path / "out", command="test")
    cells = pd.read_parquet(tmp_path / "out" / "cells.parquet")
    assert r["rows"] == len(cells) == 12
    assert sorted(cells["meta_seed"].unique()) == ["200", "200:0", "200:1", "200:2"]
    assert "token_ids" not in cells.columns
    assert (tmp_path / "out" / "summary.csv").exists() and "Command: `test`" in (tmp_path / "out" / "PROVENANCE.md").read_text()


def test_one_task_at_two_lengths_is_two_tasks_in_the_export(tmp_path):
    """Text2JSON at 8k and 16k share the task name; the export, its summary and PROVENANCE keep them apart."""
    store = tmp_path / "store"
    ResultsWriter(store).write([_row("text2json", f"a{i}", m, 80.0 if m == "full" else 20.0, 1, tokens=8192)
                                for i in range(3) for m in ("full", "shadowkv")])
    ResultsWriter(store).write([_row("text2json", f"b{i}", m, 40.0, 2) for i in range(4) for m in ("full", "shadowkv")])
    _export_module().export([str(store)], tmp_path / "out", command="")
    cells = pd.read_parquet(tmp_path / "out" / "cells.parquet")
    assert cells.groupby("task").size().to_dict() == {"text2json@16k": 8, "text2json@8k": 6}
    s = pd.read_csv(tmp_path / "out" / "summary.csv").set_index(["task", "method"])
    assert s.loc[("text2json@8k", "shadowkv"), "n"] == 3 and s.loc[("text2json@8k", "shadowkv"), "delta_vs_full"] == -60
    assert s.loc[("text2json@16k", "shadowkv"), "n"] == 4 and s.loc[("text2json@16k", "shadowkv"), "delta_vs_full"] == 0
    assert len(s) == 4  # no duplicated rows from a per-model memory merge
    assert "text2json@8k" in (tmp_path / "out" / "PROVENANCE.md").read_text()


def test_uniform_columns_keeps_missing_values_and_single_type_columns():
    mod = _export_module()
    df = pd.DataFrame({"a": [1, "x", None], "b": ["u", "v", None], "c": [1.0, float("nan"), 2.0]})
    out = mod.uniform_columns(df)
    assert out["a"].tolist()[:2] == ["1", "x"] and pd.isna(out["a"].iloc[2])
    assert out["b"].tolist()[:2] == ["u", "v"] and pd.isna(out["b"].iloc[2]) and out["c"].equals(df["c"])


def test_export_refuses_an_empty_store(tmp_path):
    with pytest.raises(SystemExit, match="no result rows"):
        _export_module().export([str(tmp_path / "none")], tmp_path / "out", command="")


def test_reproduction_figures_draw_what_the_rows_hold_and_name_what_they_skip(tmp_path):
    figs = _module("reproduction_figures")
    methods = ["full", "oracle", "shadowkv", "shadowkv_fullkeys", "shadowkv_oracle", "yakv_centred"]
    rows = [_row(t, f"{t}{i}", m, 100.0 if t.startswith("ruler") else 60.0 - 10 * j + i, 200)
            for t in ("text2json", "ruler_niah_single") for i in range(5) for j, m in enumerate(methods)]
    store = tmp_path / "store"
    ResultsWriter(store).write(rows)
    done = figs.draw(figs.load_rows([str(store)]), tmp_path / "figs")
    for name in ("accuracy_by_task", "error_attribution", "accuracy_vs_memory"):
        assert done[name] == "saved"
        assert (tmp_path / "figs" / f"{name}.pdf").stat().st_size > 0 and (tmp_path / "figs" / f"{name}.png").exists()
    assert done["landmark_precision"].startswith("skipped") and done["chunk_size"].startswith("skipped")
    assert not (tmp_path / "figs" / "chunk_size.pdf").exists()

    chunks = figs.ablation_groups()["chunk_size"][:3]  # a chunk-size sweep arrives; the other axes stay empty
    ResultsWriter(store).write([_row("text2json", f"text2json{i}", c, 50.0 - 5 * j, 200) for i in range(5)
                                for j, c in enumerate(chunks)])
    done = figs.draw(figs.load_rows([str(store)]), tmp_path / "figs")
    assert done["chunk_size"] == "saved" and done["landmark_precision"].startswith("skipped")
    stamp = figs.stamp_for(pd.DataFrame(rows))
    assert (stamp.profile, stamp.model, stamp.n) == ("reproduction", "m", 5)


def test_a_budget_variant_is_labelled_as_its_method_not_as_full_attention():
    from shadowkv_lab.plots import labels

    assert labels.config_label(resolve("shadowkv@2048t").to_dict()) == "ShadowKV, budget 2048 tokens"
    assert labels.nearest_preset(resolve("full").to_dict()) == ("full", [])
