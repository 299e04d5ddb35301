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


def test_unreadable_shard_names_the_file(tmp_path):
    (tmp_path / "part-bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(ValueError, match="part-bad.parquet"):
        load(tmp_path)
