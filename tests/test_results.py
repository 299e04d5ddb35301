"""Results store: atomic shards, one-call load, schema, done keys, records table."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from shadowkv_lab import results
from shadowkv_lab.results import RECORD_KEYS, ROW_COLUMNS, ResultsWriter, done_keys, load, load_records, shards


def _row(i, **kw):
    r = {"model": "m", "task": "t", "sample_id": f"s{i}", "method": "full", "config_hash": "abc", "score": float(i),
         "config": json.dumps({"rank": 160}), "metrics": json.dumps({"f1": 1.0})}
    r.update(kw)
    return r


def test_empty_store_has_schema(tmp_path):
    df = load(tmp_path / "nothing")
    assert len(df) == 0 and list(df.columns) == list(ROW_COLUMNS)
    assert list(load_records(tmp_path).columns) == list(RECORD_KEYS)
    assert done_keys(tmp_path / "nothing") == set()


def test_shards_roundtrip_union_of_columns(tmp_path):
    w = ResultsWriter(tmp_path, rank=3)
    p1 = w.write([_row(0, meta_depth=10), _row(1, meta_depth=20)])
    p2 = w.write([_row(2, metric_extra=0.5, meta_depth="deep")])  # new column, and meta_depth changes type
    assert w.write([]) is None
    assert p1 != p2 and all("-r003-" in p.name for p in (p1, p2)) and len(shards(tmp_path)) == 2
    df = load(tmp_path)
    assert len(df) == 3 and list(df.columns[:5]) == list(ROW_COLUMNS[:5])
    assert sorted(df.sample_id) == ["s0", "s1", "s2"]
    assert json.loads(df.config[0]) == {"rank": 160}
    assert math.isnan(df.set_index("sample_id").metric_extra["s0"])
    assert done_keys(tmp_path) == {("m", "t", f"s{i}", "abc") for i in range(3)}


def test_mixed_types_in_one_shard_stored_as_strings(tmp_path):
    ResultsWriter(tmp_path).write([_row(0, meta_x=1), _row(1, meta_x="a"), _row(2, meta_x=None)])
    df = load(tmp_path).set_index("sample_id")
    assert df.meta_x["s0"] == "1" and df.meta_x["s1"] == "a" and pd.isna(df.meta_x["s2"])


def test_killed_writer_leaves_no_visible_shard(tmp_path, monkeypatch):
    """A writer dying mid-write leaves at most a hidden temp file, which load() ignores."""
    ResultsWriter(tmp_path).write([_row(0)])
    (tmp_path / ".tmp-part-r000-dead.parquet").write_bytes(b"PAR1 half a file")  # a SIGKILLed writer's leftover

    def crash(table, where, **kw):
        where.write(b"PAR1 partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(results.pq, "write_table", crash)
    with pytest.raises(KeyboardInterrupt):
        ResultsWriter(tmp_path).write([_row(1)])
    assert len(shards(tmp_path)) == 1
    assert list(load(tmp_path).sample_id) == ["s0"]
    # pandas/pyarrow's own directory reader skips dot-files as well
    assert list(pd.read_parquet(tmp_path).sample_id) == ["s0"]


def test_records_table_is_separate_and_paired(tmp_path):
    rows, recs = ResultsWriter(tmp_path), ResultsWriter(tmp_path, table="records")
    rec = [{"model": "m", "task": "t", "sample_id": "s0", "method": "yakv", "config_hash": "abc", "step": s, "layer": 0,
            "head": 0, "recall": 0.5} for s in range(4)]
    name = rows.new_name()
    p = recs.write(rec, name=name)
    assert p.parent.name == "records"
    assert len(load_records(tmp_path)) == 0  # killed before its rows shard: not counted (the rerun redoes the cell)
    rows.write([_row(0)], name=name)
    assert len(load(tmp_path)) == 1 and len(load_records(tmp_path)) == 4
    assert list(load_records(tmp_path).columns[:5]) == list(RECORD_KEYS)


def test_records_are_stored_compact_and_old_shards_compact_in_place(tmp_path):
    """Records keep their statistics to 1e-4 as float32; a store's float64 records shards are rewritten so, in place
    (same name, so still paired with their rows shard), and a second pass changes nothing."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    vals = [0.123456789, 0.99996, 1.0300001, 0.5]
    rec = [{"model": "m", "task": "t", "sample_id": "s0", "method": "yakv", "config_hash": "abc", "step": s,
            "recall": v} for s, v in enumerate(vals)]
    name = ResultsWriter(tmp_path).new_name()
    ResultsWriter(tmp_path, table="records").write(rec, name=name)
    ResultsWriter(tmp_path).write([_row(0)], name=name)
    stored = pq.read_table(tmp_path / "records" / name)
    assert stored.schema.field("recall").type == pa.float32() and stored.schema.field("step").type == pa.int64()
    assert [round(x, 6) for x in load_records(tmp_path).recall] == [0.1235, 1.0, 1.03, 0.5]

    old = tmp_path / "records" / "part-r000-old-1-00000.parquet"
    pq.write_table(results.to_table([{**r, "sample_id": "s1"} for r in rec]), old)  # written before compaction
    ResultsWriter(tmp_path).write([_row(1)], name=old.name)
    assert pq.read_schema(old).field("recall").type == pa.float64()
    before = load_records(tmp_path)
    results.compact_store_records(tmp_path)
    after = load_records(tmp_path)
    assert pq.read_schema(old).field("recall").type == pa.float32() and len(after) == len(before) == 8
    assert (after.recall - before.recall).abs().max() <= 0.5e-4 + 1e-7
    size = old.stat().st_size
    b, a = results.compact_store_records(tmp_path)
    assert b == a and old.stat().st_size == size


def test_unreadable_shard_names_the_file(tmp_path):
    (tmp_path / "part-bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(ValueError, match="part-bad.parquet"):
        load(tmp_path)


def test_make_row_is_the_schema():
    from shadowkv_lab.cache.presets import resolve

    cfg = resolve("yakv")
    mem = {"device_bytes": 10, "offloaded_bytes": 20, "device_bytes_per_token_layer": 1.0,
           "offloaded_bytes_per_token_layer": 2.0, "device:landmarks": 5}
    row = results.make_row(model="m", task="t", sample_id=3, config=cfg, primary_metric="f1", metrics={"f1": 50.0, "p": 1.0},
                           prediction="x", prompt_tokens=4096, new_tokens=11, finish_reason="stop", n_kv_heads=8, head_dim=128,
                           dtype_bits=16, memory=mem, prefill_s=1.0, decode_s=2.0, meta={"depth": 10, "tags": [1]},
                           provenance={"dtype": "bfloat16"}, recorded=True)
    assert list(row)[: len(ROW_COLUMNS)] == list(ROW_COLUMNS)
    assert row["sample_id"] == "3" and row["score"] == 50.0 and row["decode_tok_s"] == 5.0 and row["recorded"] is True
    assert row["budget_tokens"] == 128 and row["landmark_bits"] == 2.25 and row["key_bits"] == row["value_bits"] == 4 + 32 / 1024
    assert row["metric_p"] == 1.0 and row["meta_depth"] == 10 and "meta_tags" not in row and row["mem_device:landmarks"] == 5
    assert row["dtype"] == "bfloat16" and row["git_commit"] is None
    with pytest.raises(ValueError, match="unknown provenance columns"):
        results.make_row(**{**dict(model="m", task="t", sample_id=3, config=cfg, primary_metric="f1", metrics={}, prediction="",
                                   prompt_tokens=1, new_tokens=1, finish_reason="stop", n_kv_heads=8, head_dim=128, dtype_bits=16,
                                   memory=mem, prefill_s=0.0, decode_s=0.0), "provenance": {"host": "x"}})


def test_bits_computed_in_one_place():
    """The rows' bits and the closed-form memory table come from cache.memory.format_bits."""
    from shadowkv_lab.cache.memory import analytic_bytes_per_token, format_bits
    from shadowkv_lab.cache.presets import resolve

    cfg = resolve("yakv")
    b = format_bits(cfg, 8, 128, 16)
    assert b == {"landmark_bits": 2.25, "key_bits": 4 + 32 / 1024, "value_bits": 4 + 32 / 1024}
    per = analytic_bytes_per_token(cfg, 8, 128, 131072)
    assert per["device"] == pytest.approx(2.25 * 1024 / 8 + 2 * 1024 * 2 * 64 / 131072)
    assert per["offloaded"] == pytest.approx(2 * b["value_bits"] * 1024 / 8)


def test_recorded_is_part_of_the_cell_key(tmp_path):
    """One store: a recorded row serves every request, a row without records only requests that record nothing;
    load returns one row per cell, the recorded one first."""
    w = ResultsWriter(tmp_path)
    w.write([_row(0, recorded=False, score=1.0), _row(1, recorded=False)])
    assert done_keys(tmp_path, recorded=True) == set() and len(done_keys(tmp_path)) == 2
    w.write([_row(0, recorded=True, score=1.0)])
    assert done_keys(tmp_path, recorded=True) == {("m", "t", "s0", "abc")}
    df = load(tmp_path)
    assert len(df) == 2 and df.set_index("sample_id").recorded.to_dict() == {"s0": True, "s1": False}
    assert len(load(tmp_path, all_rows=True)) == 3


def test_rows_without_the_recorded_column_are_inferred_from_records(tmp_path):
    rows, recs = ResultsWriter(tmp_path), ResultsWriter(tmp_path, table="records")
    name = rows.new_name()
    recs.write([{"model": "m", "task": "t", "sample_id": "s0", "method": "full", "config_hash": "abc", "step": 0}], name=name)
    rows.write([_row(0), _row(1)], name=name)  # written before `recorded` existed
    assert load(tmp_path).set_index("sample_id").recorded.to_dict() == {"s0": True, "s1": False}
    assert done_keys(tmp_path, recorded=True) == {("m", "t", "s0", "abc")}


def test_commit_given_by_the_environment_overrides_the_checkout(monkeypatch):
    """A tree copied to another machine may carry an older .git: SHADOWKV_LAB_COMMIT names the code's commit, checked."""
    from shadowkv_lab.provenance import _head_commit, git_commit, provenance

    monkeypatch.delenv("SHADOWKV_LAB_COMMIT", raising=False)
    assert git_commit() == _head_commit()
    sha = "0123456789abcdef0123456789abcdef01234567"
    monkeypatch.setenv("SHADOWKV_LAB_COMMIT", sha)
    assert git_commit() == sha and provenance()["git_commit"] == sha
    monkeypatch.setenv("SHADOWKV_LAB_COMMIT", "da4e6e1")
    with pytest.raises(ValueError, match="SHADOWKV_LAB_COMMIT='da4e6e1': must be a full 40-character"):
        git_commit()
