"""benchmarks/bench_zero_copy.py at tiny size: every allocation kind x span measured (plus sorted rows and the
contiguous copy), the step-like gathers (8 regions x 32 rows, four launch/order variants, each checked bit for bit
inside the benchmark), the gathered rows checked bit for bit, the JSON complete, bad arguments refused by name.

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
            "--spans-mib": "2,all", "--allocs": "cudahostalloc,thp_register", "--step-regions": "8",
            "--step-rows": "32", "--out": str(out), "--tag": "test"}
    args.update(over)
    return [x for kv in args.items() for x in kv]


def test_tiny_run_writes_every_measurement(bench, tmp_path, capsys):
    out = tmp_path / "res" / "zero_copy.json"
    bench.main(_argv(out))
    res = json.loads(out.read_text())
    assert res["tag"] == "test" and res["device"] == DEV and res["config"]["buffer_bytes"] == 4 << 20
    assert {"enabled", "defrag", "hugetlb"} <= set(res["thp"]) and not res["skipped"]
    step = [r for r in res["rows"] if "regions" in r]
    rows = [r for r in res["rows"] if "regions" not in r]
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
    # step-like gathers: cudahostalloc only by default; 4 MiB over 8 regions = 512 KiB (4096 rows of 128 B) each
    assert [(r["alloc"], r["variant"]) for r in step] == [("cudahostalloc", v) for v in bench.STEP_VARIANTS]
    assert all(r["regions"] == 8 and r["region_bytes"] == 512 << 10 and r["rows_per_region"] == 4096
               and r["rows_per_region_gathered"] == 32 and r["rows"] == 8 * 32 and r["row_bytes"] == 128
               and r["span_bytes"] == 4 << 20 for r in step)
    assert all(r["ms"] > 0 and r["mrows_per_s"] > 0 and r["gb_per_s"] > 0 for r in step)
    cfg = res["config"]
    assert (cfg["step_allocs"], cfg["step_regions"], cfg["step_rows"], cfg["step_row_bytes"]) == (
        ["cudahostalloc"], 8, 32, 128)
    printed = capsys.readouterr().out
    assert "| alloc | row B | 2 MiB | all | all sorted | copy GB/s |" in printed
    assert ("| alloc | row B | regions | region MiB | rows/region | bh-major random | bh-major sorted | "
            "region-major sorted | region-major random |") in printed
    assert "| cudahostalloc | 128 | 8 | 0.5 | 32 |" in printed
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


def test_step_gathers_per_kind_and_skipped_aloud(bench, tmp_path, capsys):
    out = tmp_path / "zc.json"
    bench.main(_argv(out, **{"--spans-mib": "all", "--allocs": "thp_register,cudahostalloc",
                             "--step-allocs": "thp_register,hugetlb_register", "--step-regions": "3",
                             "--step-rows": "17", "--step-row-bytes": "64"}))
    res = json.loads(out.read_text())
    step = [r for r in res["rows"] if "regions" in r]
    assert [r["variant"] for r in step] == list(bench.STEP_VARIANTS) and {r["alloc"] for r in step} == {"thp_register"}
    per = (4 << 20) // 3 // 64  # regions rounded down to whole rows
    assert all(r["region_bytes"] == per * 64 and r["rows"] == 3 * 17 and r["mrows_per_s"] > 0 for r in step)
    assert res["skipped"] == {"step-like gathers, hugetlb_register": "not among --allocs"}
    out2 = tmp_path / "zc2.json"  # regions too small for the rows asked: skipped with the reason
    bench.main(_argv(out2, **{"--spans-mib": "all", "--allocs": "cudahostalloc", "--step-rows": "8192"}))
    res2 = json.loads(out2.read_text())
    assert not [r for r in res2["rows"] if "regions" in r]
    assert "fewer than --step-rows 8192" in res2["skipped"]["step-like gathers, cudahostalloc"]
    assert "skipped: step-like gathers (cudahostalloc)" in capsys.readouterr().out
    out3 = tmp_path / "zc3.json"
    bench.main(_argv(out3, **{"--spans-mib": "all", "--allocs": "cudahostalloc", "--step-allocs": "none"}))
    assert not [r for r in json.loads(out3.read_text())["rows"] if "regions" in r]


@pytest.mark.parametrize("flag, value, shown", [
    ("--row-bytes", "100", "'100'"), ("--row-bytes", "128,0", "'0'"), ("--allocs", "bogus", "'bogus'"),
    ("--allocs", "thp_register,thp_register", "'thp_register' is listed twice"), ("--spans-mib", "2,half", "'half'"),
    ("--rows", "0", "0"), ("--buffer-gib", "-1", "-1.0"), ("--device", "tpu", "'tpu'"), ("--lane-bytes", "3", "3"),
    ("--step-regions", "0", "0"), ("--step-regions", "65536", "65536"), ("--step-rows", "-4", "-4"),
    ("--step-row-bytes", "96", "96"), ("--step-row-bytes", "4", "4"), ("--step-allocs", "pinned", "'pinned'")])
def test_bad_arguments_are_refused_by_name(bench, tmp_path, capsys, flag, value, shown):
    out = tmp_path / "zc.json"
    with pytest.raises(SystemExit) as e:
        bench.main(_argv(out, **{flag: value}))
    err = capsys.readouterr().err
    assert e.value.code == 2 and flag in err and shown in err, err
    assert not out.exists()
