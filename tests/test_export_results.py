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


def _export_module():
    spec = importlib.util.spec_from_file_location("export_results", ROOT / "benchmarks" / "export_results.py")
    mod = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(ROOT))
    spec.loader.exec_module(mod)
    return mod


def _row(task, sample, method, score, seed):
    return make_row(model="m", task=task, sample_id=sample, config=resolve(method), primary_metric="score",
                    metrics={"score": score}, prediction="p", prompt_tokens=100, new_tokens=3, finish_reason="stop",
                    n_kv_heads=2, head_dim=64, dtype_bits=16, memory=MEM, prefill_s=0.1, decode_s=0.2,
                    meta={"seed": seed})


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


def test_uniform_columns_keeps_missing_values_and_single_type_columns():
    mod = _export_module()
    df = pd.DataFrame({"a": [1, "x", None], "b": ["u", "v", None], "c": [1.0, float("nan"), 2.0]})
    out = mod.uniform_columns(df)
    assert out["a"].tolist()[:2] == ["1", "x"] and pd.isna(out["a"].iloc[2])
    assert out["b"].tolist()[:2] == ["u", "v"] and pd.isna(out["b"].iloc[2]) and out["c"].equals(df["c"])


def test_export_refuses_an_empty_store(tmp_path):
    with pytest.raises(SystemExit, match="no result rows"):
        _export_module().export([str(tmp_path / "none")], tmp_path / "out", command="")
