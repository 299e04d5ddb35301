"""Staging for a GPU machine that takes 64 MiB a call (benchmarks/stage_gpu.py) and gpu_session.sh's grid,
reproduce and pack stages."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from stage_gpu import CALL_LIMIT, MARGIN, PART_MAX, part_bytes, plan_calls, split  # noqa: E402


def test_parts_fit_a_call_beside_the_tree():
    assert part_bytes(1_000_000) == PART_MAX  # a small tree: the parts' own cap
    assert part_bytes(14_000_000) == CALL_LIMIT - 14_000_000 - MARGIN  # the tree travels with every call
    with pytest.raises(ValueError, match="the tree is 66,000,000 bytes"):
        part_bytes(66_000_000)


def test_split_gives_ordered_parts_that_concatenate_to_the_file(tmp_path):
    src = tmp_path / "model.gguf"
    src.write_bytes(os.urandom(10_007))
    parts = split(src, 1_000, tmp_path)
    assert [p.name for p in parts] == [f"m.{i:02d}" for i in range(11)] and parts[-1].stat().st_size == 7
    assert b"".join(p.read_bytes() for p in sorted(tmp_path.glob("m.*"))) == src.read_bytes()
    with pytest.raises(ValueError, match="size=0"):
        split(src, 0, tmp_path)


def test_call_plan_keeps_parts_apart_and_the_last_part_last():
    parts = [(f"m.{i:02d}", 50) for i in range(3)] + [("m.03", 10)]
    calls = plan_calls(parts, [("data", 70), ("store", 30), ("big", 95)], room=100)
    assert [c[0] for c in calls if c[0].startswith("m.")] == ["m.00", "m.01", "m.02", "m.03"]
    assert calls[-1] == ["m.03", "data"]  # the last part's call takes what fits first: it starts the work
    assert ["m.00", "store"] in calls and ["big"] in calls  # then the earlier calls; else a call of its own
    assert calls.index(["big"]) == len(calls) - 2
    with pytest.raises(ValueError, match="huge: 101 bytes do not fit"):
        plan_calls(parts, [("huge", 101)], room=100)


def _session(tmp_path, *argv, **env):
    env = {**os.environ, "OUT": str(tmp_path / "out"), **env}
    return subprocess.run(["bash", "benchmarks/gpu_session.sh", *argv], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


def test_gpu_session_grid_and_reproduce_stages(tmp_path):
    r = _session(tmp_path, "--model", "qwen2.5-coder-1.5b", "grid", "reproduce", "--", "mn30_main", "--refill",
                 DRY="1", NOTEBOOKS="07 02")
    assert r.returncode == 0, r.stderr
    lines = [ln.strip() for ln in r.stdout.splitlines() if not ln.startswith("[gpu_session]")]
    assert lines == [
        "python -m shadowkv_lab.notebook_grid notebooks/07_error_attribution.ipynb "
        ".stage/params/07_error_attribution.yaml --all",
        "python -m shadowkv_lab.notebook_grid notebooks/02_key_compression.ipynb .stage/params/02_key_compression.yaml --all",
        "python benchmarks/reproduce.py mn30_main --refill",
    ]
    bench = _session(tmp_path, "--model", "m", "zerocopy", "record", "decode", "--", "--scorer", "lut", DRY="1")
    lines = [ln.strip() for ln in bench.stdout.splitlines() if not ln.startswith("[gpu_session]")]
    out = tmp_path / "out"
    assert [shlex.split(ln) for ln in lines] == [shlex.split(c) for c in (  # printed shell-quoted (printf %q)
        f"python benchmarks/bench_zero_copy.py --out {out}/zero_copy.json",  # no ARGS: they are decode's
        f"python benchmarks/bench_record.py --shape 28,12,2,128 --tokens 16384 --rows 42 --device cuda --out {out}/record.json",
        f"python benchmarks/bench_decode_step.py --out {out}/decode --scorer lut")]
    cmp = _session(tmp_path, "--model", "m", "compare", "--", "--task", "text2json", "--n", "2", DRY="1")
    lines = [shlex.split(ln) for ln in cmp.stdout.splitlines() if not ln.startswith("[gpu_session]")]
    assert lines == [shlex.split(c) for c in (  # the rerun into a fresh store, then the comparison with the stored rows
        f"python -m shadowkv_lab run --model m --out {out}/fresh --task text2json --n 2",
        f"python benchmarks/compare_stores.py .stage/store {out}/fresh --out {out}/agreement.csv")]
    missing = _session(tmp_path, "--model", "m", "grid", DRY="1")
    assert "grid: set NOTEBOOKS" in missing.stderr


def test_gpu_session_pack_brings_back_only_the_new_shards(tmp_path):
    store = tmp_path / "st" / "store"
    (store / "records").mkdir(parents=True)
    (store / "old.parquet").write_bytes(b"old")
    new = [store / "new.parquet", store / "records" / "new.parquet"]
    for p in new:
        p.write_bytes(b"new")
        os.utime(p, (p.stat().st_atime, p.stat().st_mtime + 3600))  # written during the call
    r = _session(tmp_path, "--model", "m", "pack", STORE=str(store))
    assert r.returncode == 0 and "pack: 2 shards" in r.stdout, r.stdout + r.stderr
    with tarfile.open(tmp_path / "out" / "new.tgz") as t:
        assert sorted(t.getnames()) == ["store/new.parquet", "store/records/new.parquet"]
