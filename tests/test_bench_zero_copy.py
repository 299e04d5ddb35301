"""benchmarks/bench_zero_copy.py at tiny size: every allocation kind x span measured (plus sorted rows and the
contiguous copy), the gathered rows checked bit for bit, the JSON complete, bad arguments refused by name.

CPU (CI): the Triton interpreter (set before triton is imported); nothing is page-locked there. On a GPU machine run
with TRITON_INTERPRET=0 to drive the compiled kernel over page-locked (and registered) host memory."""

import importlib.util
import json
import os
from pathlib import Path

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

pytest.importorskip("triton")

GPU = os.environ["TRITON_INTERPRET"] == "0" and torch.cuda.is_available()
DEV = "cuda" if GPU else "cpu"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_zero_copy", ROOT / "benchmarks" / "bench_zero_copy.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _argv(out, **over):
    args = {"--device": DEV, "--buffer-gib": str(4 / 1024), "--rows": "64", "--row-bytes": "128",
            "--spans-mib": "2,all", "--allocs": "cudahostalloc,thp_register", "--out": str(out), "--tag": "test"}
    args.update(over)
    return [x for kv in args.items() for x in kv]


def test_tiny_run_writes_every_measurement(bench, tmp_path, capsys):
    out = tmp_path / "res" / "zero_copy.json"
    bench.main(_argv(out))
    res = json.loads(out.read_text())
    assert res["tag"] == "test" and res["device"] == DEV and res["config"]["buffer_bytes"] == 4 << 20
    assert {"enabled", "defrag", "hugetlb"} <= set(res["thp"]) and not res["skipped"]
    rows = res["rows"]
    got = sorted((r["alloc"], r["variant"], str(r["span_mib"])) for r in rows)
    want = sorted((a, v, s) for a in ("cudahostalloc", "thp_register")
                  for v, s in [("random", "2"), ("random", "all"), ("sorted", "all"), ("contiguous", "None")])
    assert got == want  # one row per alloc x span, plus the sorted and the contiguous rows
    assert all(r["ms"] > 0 and r["mrows_per_s"] > 0 and r["gb_per_s"] > 0 for r in rows)
    assert all(r["rows"] == 64 and r["row_bytes"] == 128 for r in rows)
    for info in res["allocs"].values():
        assert "AnonHugePages" in info["mapping"] and info["smaps_rollup_AnonHugePages"].startswith("AnonHugePages")
        if not GPU:  # nothing page-locked without CUDA, and the JSON says so
            assert info["page_locked"].startswith("not ") and "no CUDA" in info["page_locked"]
    assert res["allocs"]["thp_register"]["ptr_2mib_aligned"]
    printed = capsys.readouterr().out
    assert "| alloc | row B | 2 MiB | all | all sorted | copy GB/s |" in printed
    assert not list(out.parent.glob(".*tmp"))  # written through a temporary file, which is gone


def test_spans_past_the_buffer_and_missing_hugetlb_pool_are_skipped_aloud(bench, tmp_path, capsys, monkeypatch):
    def no_pool(*a, **k):
        raise OSError(12, "Cannot allocate memory")

    real = bench.mmap.mmap
    monkeypatch.setattr(bench.mmap, "mmap", lambda n, size, flags=0, **k: no_pool() if flags & bench.MAP_HUGETLB
                        else real(n, size, flags=flags, **k))
    out = tmp_path / "zc.json"
    bench.main(_argv(out, **{"--spans-mib": "2,8", "--allocs": "hugetlb_register,thp_register"}))
    res = json.loads(out.read_text())
    assert "Cannot allocate memory" in res["skipped"]["hugetlb_register"]
    assert "larger than the buffer" in res["skipped"]["span 8 MiB"]
    assert {r["alloc"] for r in res["rows"]} == {"thp_register"}
    printed = capsys.readouterr().out
    assert "skipped: hugetlb_register: mmap(MAP_HUGETLB)" in printed and "skipped: span 8 MiB" in printed


def test_mmap_buffers_start_their_storage_on_a_2mib_boundary(bench):
    """is_pinned() (and so host_arg) asks about a tensor's storage, which must start where cudaHostRegister began."""
    host = bench.HostBuffer("thp_register", 4 << 20, lock=False, why_not="test")
    try:
        t = host.t
        assert t.untyped_storage().data_ptr() == t.data_ptr() and t.data_ptr() % (2 << 20) == 0
        assert t.numel() == 4 << 20 and int(t.view(torch.int64)[-1]) == (4 << 20) // 8 - 1
        del t
    finally:
        host.free()
    assert host.mm is None and host.t is None


@pytest.mark.parametrize("flag, value, shown", [
    ("--row-bytes", "100", "'100'"), ("--row-bytes", "128,0", "'0'"), ("--allocs", "bogus", "'bogus'"),
    ("--allocs", "thp_register,thp_register", "'thp_register' is listed twice"), ("--spans-mib", "2,half", "'half'"),
    ("--rows", "0", "0"), ("--buffer-gib", "-1", "-1.0"), ("--device", "tpu", "'tpu'"), ("--lane-bytes", "3", "3")])
def test_bad_arguments_are_refused_by_name(bench, tmp_path, capsys, flag, value, shown):
    out = tmp_path / "zc.json"
    with pytest.raises(SystemExit) as e:
        bench.main(_argv(out, **{flag: value}))
    err = capsys.readouterr().err
    assert e.value.code == 2 and flag in err and shown in err, err
    assert not out.exists()
