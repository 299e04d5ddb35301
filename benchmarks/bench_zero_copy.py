"""Zero-copy row gathers from page-locked host memory: rate against the span the rows come from and the host pages.

    python benchmarks/bench_zero_copy.py --out benchmarks/results/zero_copy_h100.json --tag "h100, THP madvise"
    TRITON_INTERPRET=1 python benchmarks/bench_zero_copy.py --device cpu   # smoke run of the code path, no timing value

What. `copy_rows` (shadowkv_lab.kernels.fetch), the kernel the decode step uses to gather selected rows from
pinned host memory, the GPU dereferencing host pointers over PCIe. For each host allocation kind x row size x span
it reads `--rows` distinct random rows of `--row-bytes` from the first `span` bytes of a `--buffer-gib` buffer, and
reports ms, M rows/s and GB/s (CUDA events, median of ITERS calls after WARMUP, the GPU's L2 flushed before each
timed call). Also, per kind and row size: the same rows sorted ascending over the whole buffer, and a contiguous
pinned->device copy of as many bytes (`copy_`, the copy engine) as the reference rate of the link.

Why. On an H100, random 128-byte rows from an 8.6 GB pinned buffer came at about 37 M rows/s (4.7 GB/s) whatever the
launch shape, while a contiguous pinned->device copy ran at 55 GB/s. Hypothesis, to be tested here, not established:
the gather is bound by address translation, GPU (and IOMMU) TLB misses on the host's 4 KiB pages. If so the rate
  (a) rises when the rows are confined to a smaller span of the buffer (fewer distinct pages to translate), and
  (b) rises when the buffer is backed by 2 MiB pages before it is page-locked (thp_register, hugetlb_register).
If neither moves it, the limit is elsewhere (e.g. how many PCIe reads the GPU keeps in flight).

Allocation kinds (each a page-locked uint8 buffer of --buffer-gib, rounded up to 2 MiB; one alive at a time):
  cudahostalloc     torch.empty(n, dtype=torch.uint8, pin_memory=True): what the package uses
  thp_register      anonymous mmap, madvise(MADV_HUGEPAGE), every page touched, then cudaHostRegister
  hugetlb_register  mmap(MAP_HUGETLB) from the reserved 2 MiB pool, touched, then cudaHostRegister; skipped (and said
                    so) when the pool is too small: reserve it first, e.g. `sysctl vm.nr_hugepages=4200` for 8 GiB
The JSON records the system's THP settings and, per kind, the mapping's page sizes and AnonHugePages after touching
(/proc/self/smaps), so the reader can see whether huge pages were used. On cpu nothing is page-locked (recorded).

Rows are distinct within a call (the first --rows of a random permutation of the span's rows, fixed seed: every kind
reads the same rows) and the L2 is flushed before each timed call, so no read is served from the GPU's L2 (50 MB on an
H100, more than the small spans): a span holding fewer rows than --rows gives them all, once (each JSON row records
its row count). Timings mean something only on CUDA (TRITON_INTERPRET unset or 0).

Step-like gathers (per kind in --step-allocs, default cudahostalloc only). What the decode step does: for each of
BH = --step-regions "regions" (one KV head's rows of one sequence, contiguous) it gathers K = --step-rows distinct
rows of --step-row-bytes. The first regions * region_bytes of the buffer are viewed as (regions, rows_per_region,
row_bytes) uint8, region_bytes = buffer_bytes // regions rounded down to a multiple of the row size (the section is
skipped, and says why, when a region holds fewer than K rows); per region K distinct random rows (fixed seed) are
drawn. Four variants, each checked once bit for bit against view[r, idx], then timed like the rows above:
  step bh-major random       _step_gather below with grid (BH, cdiv(K, BN)): program_id(0) = the region, fastest,
                             so the programs in flight spread over many regions (the package's launch before
                             kernels.fetch went region-major); indices in top-k (here random) order
  step bh-major sorted       the same, each region's indices sorted ascending
  step region-major sorted   gather_rows (shadowkv_lab.kernels.fetch) as the package calls it now: grid
                             (cdiv(K, BN), BH), program_id(0) = the block within a region, so the programs in flight
                             cover few regions; sorted indices
  step region-major random   the same launch, indices unsorted
Why. H100 runs of the first section: 361 M rows/s (46 GB/s) from a 256 MiB span, 55 M rows/s from 2 GiB, 34 M rows/s
from 8 GiB, 68 M rows/s for the same rows sorted; huge pages changed nothing. So the GPU's translation reach looks like
roughly 256 MiB of host memory touched at once, and a launch whose programs in flight read few regions should stay
within it. Measured on an H100 (256 regions of 32 MiB, 4,096 rows of 128 B each): bh-major 37 M rows/s random and
212 sorted; region-major 328 sorted and 313 random (`benchmarks/results/zero_copy_step_h100.json`).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import mmap
import os
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

import torch
import triton

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import triton.language as tl  # noqa: E402
from shadowkv_lab.kernels.common import host_arg  # noqa: E402
from timing import call_ms  # noqa: E402
from shadowkv_lab.kernels.fetch import GATHER_BLOCK, GATHER_WARPS, copy_rows, gather_rows  # noqa: E402

ALLOCS = ("cudahostalloc", "thp_register", "hugetlb_register")
HUGE = 2 << 20  # 2 MiB
MAP_HUGETLB = 0x40000  # linux/mman.h (the mmap module does not export it)
LANES = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
SEED, WARMUP, ITERS, CPU_ITERS = 0, 3, 10, 2
FLUSH_BYTES = 256 << 20  # written before each timed call: evicts the H100's 50 MB L2
CHECK_ROWS = 4096  # rows compared bit for bit with src[idx] per kind and row size
STEP_VARIANTS = ("step bh-major random", "step bh-major sorted", "step region-major sorted", "step region-major random")
SMAPS_FIELDS = ("Size", "Rss", "AnonHugePages", "Private_Hugetlb", "KernelPageSize", "MMUPageSize", "THPeligible")


# ---------------------------------------------------------------------------------------------- arguments
def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default=None, help="cuda, cuda:N or cpu (default: cuda if available)")
    ap.add_argument("--buffer-gib", type=float, default=None, help="host buffer size (default 8 on cuda, 0.01 on cpu)")
    ap.add_argument("--rows", type=int, default=None, help="rows per call (default 262144 on cuda, 512 on cpu)")
    ap.add_argument("--row-bytes", default="128,1024", help="row sizes, multiples of 8 up to 4096")
    ap.add_argument("--lane-bytes", type=int, default=1, choices=(1, 2, 4, 8),
                    help="element size the rows are read as (1: uint8 rows, as fp8 stores; 2: bf16 rows)")
    ap.add_argument("--spans-mib", default="2,32,256,2048,all", help="spans in MiB, 'all' = whole buffer")
    ap.add_argument("--allocs", default=",".join(ALLOCS), help=f"allocation kinds among {', '.join(ALLOCS)}")
    ap.add_argument("--step-allocs", default="cudahostalloc",
                    help="kinds (among --allocs) that also run the step-like gathers, or 'none'")
    ap.add_argument("--step-regions", type=int, default=None,
                    help="regions (B x KV heads) of the step-like gathers (default 256 on cuda, 8 on cpu)")
    ap.add_argument("--step-rows", type=int, default=None,
                    help="rows gathered per region (default 4096 on cuda, 32 on cpu)")
    ap.add_argument("--step-row-bytes", type=int, default=128, help="row size of the step-like gathers, a power of two")
    ap.add_argument("--out", default="benchmarks/results/zero_copy.json")
    ap.add_argument("--tag", default="", help="free text stored in the JSON")
    args = ap.parse_args(argv)

    def items(flag, text, ok, rule):
        vals = []
        for part in text.split(","):
            if not ok(part.strip()):
                ap.error(f"{flag}: {part!r} is not allowed; {rule}")
            if part.strip() in vals:
                ap.error(f"{flag}: {part!r} is listed twice")
            vals.append(part.strip())
        return vals

    def whole(s, lo, hi):
        return s.isdigit() and lo <= int(s) <= hi

    dev = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if dev != "cpu" and not (dev == "cuda" or (dev.startswith("cuda:") and dev[5:].isdigit())):
        ap.error(f"--device: {dev!r} is not allowed; use cuda, cuda:N or cpu")
    if dev != "cpu" and not torch.cuda.is_available():
        ap.error(f"--device: {dev!r} asked for, but torch sees no CUDA device; use --device cpu")
    if dev != "cpu" and triton_interpreting():
        ap.error("--device cuda times the compiled kernel: unset TRITON_INTERPRET (or set it to 0)")
    if dev == "cpu" and not triton_interpreting():
        ap.error("--device cpu runs the kernel under Triton's interpreter: set TRITON_INTERPRET=1")
    args.device = torch.device(dev)
    cuda = args.device.type == "cuda"
    args.buffer_gib = args.buffer_gib if args.buffer_gib is not None else (8.0 if cuda else 0.01)
    if not (args.buffer_gib > 0 and math.isfinite(args.buffer_gib)):
        ap.error(f"--buffer-gib: {args.buffer_gib!r} is not allowed; give a positive size in GiB")
    args.rows = args.rows if args.rows is not None else (1 << 18 if cuda else 512)
    if args.rows < 1:
        ap.error(f"--rows: {args.rows!r} is not allowed; give a positive number of rows")
    args.row_bytes = [int(v) for v in items(
        "--row-bytes", args.row_bytes, lambda s: whole(s, 8, 4096) and int(s) % 8 == 0,
        "row sizes are multiples of 8 bytes from 8 to 4096 (e.g. 128,1024)")]
    args.spans_mib = [v if v == "all" else int(v) for v in items(
        "--spans-mib", args.spans_mib, lambda s: s == "all" or whole(s, 1, 1 << 30), "give whole MiB (>= 1) or 'all'")]
    args.allocs = items("--allocs", args.allocs, lambda s: s in ALLOCS, f"choose from {', '.join(ALLOCS)}")
    args.step_allocs = [] if args.step_allocs.strip() == "none" else items(
        "--step-allocs", args.step_allocs, lambda s: s in ALLOCS, f"choose from {', '.join(ALLOCS)}, or 'none'")
    args.step_regions = args.step_regions if args.step_regions is not None else (256 if cuda else 8)
    if not 1 <= args.step_regions <= 65535:  # a grid dimension of the region-major launch
        ap.error(f"--step-regions: {args.step_regions!r} is not allowed; give 1 to 65535 regions")
    args.step_rows = args.step_rows if args.step_rows is not None else (4096 if cuda else 32)
    if not 1 <= args.step_rows <= 1 << 20:
        ap.error(f"--step-rows: {args.step_rows!r} is not allowed; give 1 to {1 << 20} rows per region")
    rb = args.step_row_bytes
    if not (8 <= rb <= 4096 and rb & (rb - 1) == 0):  # one tl.arange over the row: a power of two
        ap.error(f"--step-row-bytes: {rb!r} is not allowed; give a power of two from 8 to 4096")
    return args


def triton_interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


# ---------------------------------------------------------------------------------------------- host buffers
def read_text(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def meminfo_lines(*names) -> dict:
    text = read_text("/proc/meminfo") or ""
    return {line.split(":")[0]: line.split(":", 1)[1].strip() for line in text.splitlines()
            if line.split(":")[0] in names}


def smaps_of(addr: int) -> dict:
    """/proc/self/smaps fields of the mapping that holds addr: its page sizes and how much of it is huge pages."""
    text = read_text("/proc/self/smaps")
    if text is None:
        return {"error": "/proc/self/smaps not readable"}
    out, inside = {}, False
    for line in text.splitlines():
        head, _, rest = line.partition(" ")
        if not head.endswith(":"):  # a mapping's header: start-end perms offset dev inode [path]
            if inside:
                break
            lo, hi = (int(x, 16) for x in head.split("-"))
            inside = lo <= addr < hi
            if inside:
                out["range"] = head
        elif inside and head[:-1] in SMAPS_FIELDS:
            out[head[:-1]] = rest.strip()
    return out


class HostBuffer:
    """A uint8 host buffer of one allocation kind, page-locked on CUDA and filled (every page touched) with int64
    words 0, 1, 2, ... so that any misplaced byte shows. free() unlocks it and gives the memory back."""

    def __init__(self, kind: str, nbytes: int, lock: bool, why_not: str):
        self.kind, self.mm, self.registered = kind, None, False
        self.info = {"kind": kind, "bytes": nbytes}
        if kind == "cudahostalloc":
            self.t = torch.empty(nbytes, dtype=torch.uint8, pin_memory=lock)
            self.info["page_locked"] = "cudaHostAlloc (pin_memory=True)" if lock else f"not page-locked: {why_not}"
        else:
            huge = kind == "hugetlb_register"
            flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | (MAP_HUGETLB if huge else 0)
            extra = 0 if huge else HUGE  # room to start the buffer on a 2 MiB boundary (hugetlb maps are aligned)
            try:
                self.mm = mmap.mmap(-1, nbytes + extra, flags=flags, prot=mmap.PROT_READ | mmap.PROT_WRITE)
            except OSError as e:
                if not huge:
                    raise
                raise Unavailable(f"mmap(MAP_HUGETLB) of {nbytes} bytes failed: {e} (reserved 2 MiB pages: "
                                  f"{meminfo_lines('HugePages_Total', 'HugePages_Free')})") from e
            if not huge:
                try:
                    self.mm.madvise(mmap.MADV_HUGEPAGE)
                    self.info["madvise"] = "MADV_HUGEPAGE"
                except OSError as e:  # a kernel without THP: measured anyway, on whatever pages it gives
                    self.info["madvise"] = f"MADV_HUGEPAGE failed: {e}"
                    print(f"{kind}: madvise(MADV_HUGEPAGE) failed: {e}")
            off = -torch.frombuffer(self.mm, dtype=torch.uint8, count=1).data_ptr() % HUGE
            # A tensor whose storage starts at the buffer (is_pinned() asks about the storage's first byte); it keeps
            # the mmap exported, so the mapping lives as long as any view of it.
            self.t = torch.frombuffer(self.mm, dtype=torch.uint8, count=nbytes, offset=off)
        try:
            self._fill_and_lock(nbytes, lock, why_not)
        except BaseException:
            self.free()
            raise

    def _fill_and_lock(self, nbytes: int, lock: bool, why_not: str):
        torch.arange(nbytes // 8, dtype=torch.int64, out=self.t.view(torch.int64))  # the first touch of every page
        ptr = self.t.data_ptr()
        rollup = (read_text("/proc/self/smaps_rollup") or "").splitlines()
        self.info.update(ptr_2mib_aligned=ptr % HUGE == 0, mapping=smaps_of(ptr),
                         smaps_rollup_AnonHugePages=next((s.strip() for s in rollup if s.startswith("AnonHuge")), None))
        if self.kind != "cudahostalloc":
            if lock:
                cudart = torch.cuda.cudart()
                err = cudart.cudaHostRegister(ptr, nbytes, 0)  # cudaHostRegisterDefault; UVA maps it for the GPU
                if int(err) != 0:
                    raise RuntimeError(f"cudaHostRegister({nbytes} bytes) of {self.kind} failed: error {int(err)} "
                                       f"({cudart.cudaGetErrorString(err)})")
                self.registered = True
                self.info["mapping_after_lock"] = smaps_of(ptr)  # did pinning keep (or split) the huge pages?
            self.info["page_locked"] = "cudaHostRegister(flags=0)" if lock else f"not registered: {why_not}"
        if lock and not self.t.is_pinned():
            raise RuntimeError(f"{self.kind}: the buffer is not seen as pinned after page-locking")

    def free(self):
        if self.registered:
            torch.cuda.synchronize()
            cudart = torch.cuda.cudart()
            err = cudart.cudaHostUnregister(self.t.data_ptr())
            if int(err) != 0:
                raise RuntimeError(f"cudaHostUnregister of {self.kind} failed: error {int(err)} "
                                   f"({cudart.cudaGetErrorString(err)})")
            self.registered = False
        self.t = None
        gc.collect()
        if self.mm is not None:
            try:
                self.mm.close()
            except BufferError:  # a view still alive (an exception's traceback): the mapping goes with it
                pass
            self.mm = None
        empty_host_cache = getattr(getattr(torch, "accelerator", None), "empty_host_cache", None) or getattr(
            torch._C, "_host_emptyCache", None)
        if self.kind == "cudahostalloc" and torch.cuda.is_available() and empty_host_cache is not None:
            empty_host_cache()  # torch's pinned allocator caches freed blocks: give the 8 GiB back now


class Unavailable(Exception):
    """This allocation kind cannot be had on this host (recorded under `skipped`)."""


# ---------------------------------------------------------------------------------------------- timing
def time_ms(fn, dev: torch.device, flush: torch.Tensor | None) -> float:
    """Median ms of fn: on CUDA after WARMUP calls, the L2 flushed before each of ITERS timed calls; on cpu CPU_ITERS."""
    cuda = dev.type == "cuda"
    if cuda:
        for _ in range(WARMUP):
            fn()
        torch.cuda.synchronize()
    times = []
    for _ in range(ITERS if cuda else CPU_ITERS):
        if cuda:
            flush.zero_()
        times.append(call_ms(fn, cuda))
    return statistics.median(times)


def check(view: torch.Tensor, idx: torch.Tensor, kind: str, rb: int):
    """copy_rows must equal src[idx] bit for bit; fail loudly otherwise."""
    got, want = copy_rows(view, idx).cpu(), view[idx.cpu()]
    if not torch.equal(got, want):
        bad = int((got != want).any(1).sum())
        raise AssertionError(f"{kind}, {rb}-byte rows: copy_rows differs from src[idx] in {bad} of {idx.numel()} rows")


def measure(buf: torch.Tensor, kind: str, args, spans: list, flush, rows_out: list):
    """All measurements of one buffer: per row size, random rows from every span and, over the whole buffer, the same
    rows sorted; then a contiguous copy of as many bytes."""
    dev, lanes = args.device, LANES[args.lane_bytes]
    for rb in args.row_bytes:
        for label, span in spans + [("all", buf.numel())]:
            view = buf[: span // rb * rb].view(lanes).view(-1, rb // args.lane_bytes)
            g = torch.Generator(device=dev).manual_seed(SEED)
            idx = torch.randperm(view.shape[0], generator=g, device=dev)[: args.rows]
            variants = [("random", idx)]
            if label == "all":
                check(view, idx[:CHECK_ROWS], kind, rb)
                variants.append(("sorted", idx.sort().values))
            for variant, ix in variants:
                ms = time_ms(partial(copy_rows, view, ix), dev, flush)
                record(rows_out, kind, variant, rb, label, span, ix.numel(), ms)
        nb = min(args.rows * rb, buf.numel())
        dst = torch.empty(nb, dtype=torch.uint8, device=dev)
        ms = time_ms(partial(dst.copy_, buf[:nb], non_blocking=True), dev, flush)
        record(rows_out, kind, "contiguous", rb, None, nb, nb // rb, ms)


# ---------------------------------------------------------------------------------------------- step-like gathers
@triton.jit
def _step_gather(src_ptr, idx_ptr, out_ptr, K, stride_r, stride_p, D: tl.constexpr, BN: tl.constexpr):
    """out[r, i] = src row idx[r, i] of region r, a bit copy (_gather_rows's FMT 0 load/store without RoPE), launched
    bh-major: program_id(0) = the region, program_id(1) = the block within it."""
    r = tl.program_id(0).to(tl.int64)
    i = tl.program_id(1) * BN + tl.arange(0, BN)
    mask = i < K
    idx = tl.load(idx_ptr + r * K + i, mask=mask, other=0)
    dd = tl.arange(0, D)
    x = tl.load(src_ptr + r * stride_r + idx[:, None] * stride_p + dd[None, :], mask=mask[:, None], other=0)
    tl.store(out_ptr + (r * K + i)[:, None] * D + dd[None, :], x, mask=mask[:, None])


def step_bh_major(view: torch.Tensor, idx: torch.Tensor, out: torch.Tensor):
    R, K = idx.shape
    _step_gather[(R, triton.cdiv(K, GATHER_BLOCK))](host_arg(view), idx, out, K, view.stride(0), view.stride(1),
                                                     D=view.shape[2], BN=GATHER_BLOCK, num_warps=GATHER_WARPS)


def measure_step(buf: torch.Tensor, kind: str, args, flush, rows_out: list, skipped: dict):
    """The four step-like variants over one buffer (see the module docstring)."""
    dev, R, K, rb = args.device, args.step_regions, args.step_rows, args.step_row_bytes
    region_bytes = buf.numel() // R // rb * rb
    per = region_bytes // rb
    if per < K:
        why = (f"{R} regions of the {buf.numel() / 2**20:g} MiB buffer hold {per} rows of {rb} B each, "
               f"fewer than --step-rows {K}")
        skipped[f"step-like gathers, {kind}"] = why
        print(f"skipped: step-like gathers ({kind}): {why}")
        return
    view = buf[: R * region_bytes].view(R, per, rb)
    g = torch.Generator(device=dev).manual_seed(SEED)
    rand = torch.stack([torch.randperm(per, generator=g, device=dev)[:K] for _ in range(R)])
    srt = rand.sort(dim=1).values
    out = torch.empty(R, K, rb, dtype=torch.uint8, device=dev)
    strides = (view.stride(0), 0, view.stride(1))  # H = 1: region bh starts at bh * stride_b
    calls = {"step bh-major random": partial(step_bh_major, view, rand, out),
             "step bh-major sorted": partial(step_bh_major, view, srt, out),
             "step region-major sorted": partial(gather_rows, view, strides, 1, srt, out),
             "step region-major random": partial(gather_rows, view, strides, 1, rand, out)}
    extra = {"regions": R, "region_bytes": region_bytes, "rows_per_region": per, "rows_per_region_gathered": K}
    for variant, fn in calls.items():
        ix = srt if "sorted" in variant else rand
        out.fill_(255)  # a row left unwritten cannot pass: the buffer's int64 counters have zero high bytes
        fn()
        want = view[torch.arange(R)[:, None], ix.cpu()]
        if not torch.equal(out.cpu(), want):
            bad = int((out.cpu() != want).any(-1).sum())
            raise AssertionError(f"{kind}, {variant}: {bad} of {R * K} rows differ from view[r, idx]")
        ms = time_ms(fn, dev, flush)
        record(rows_out, kind, variant, rb, R * region_bytes / 2**20, R * region_bytes, R * K, ms, **extra)


# ---------------------------------------------------------------------------------------------- reporting
def record(rows_out, kind, variant, rb, label, span, n, ms, **extra):
    row = {"alloc": kind, "variant": variant, "row_bytes": rb, "span_mib": label, "span_bytes": span, "rows": n,
           "ms": ms, "mrows_per_s": n / ms / 1e3, "gb_per_s": n * rb / ms / 1e6, **extra}
    rows_out.append(row)
    where = {None: f"{span / 2**20:g} MiB copied", "all": "whole buffer"}.get(label, f"span {label} MiB")
    if "regions" in extra:
        where = f"{extra['regions']} x {extra['region_bytes'] / 2**20:g} MiB"
    print(f"{kind:<17} {rb:>5} B  {variant:<24} {where:<16} {n:>8} rows  {ms:9.3f} ms  "
          f"{row['mrows_per_s']:8.2f} M rows/s  {row['gb_per_s']:7.2f} GB/s", flush=True)


def markdown(rows: list, spans: list) -> str:
    """M rows/s per kind and row size across spans; GB/s of the contiguous copy."""
    cols = [s for s, _ in spans] + ["all"]
    head = ["alloc", "row B"] + [f"{c} MiB" if c != "all" else "all" for c in cols] + ["all sorted", "copy GB/s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    rows = [r for r in rows if "regions" not in r]
    for key in dict.fromkeys((r["alloc"], r["row_bytes"]) for r in rows):
        mine = [r for r in rows if (r["alloc"], r["row_bytes"]) == key]
        cell = {(r["variant"], r["span_mib"]): r for r in mine}
        vals = [cell.get(("random", c)) for c in cols] + [cell.get(("sorted", "all"))]
        copy = cell.get(("contiguous", None))
        lines.append("| " + " | ".join([key[0], str(key[1])] + [f"{v['mrows_per_s']:.3g}" if v else "" for v in vals]
                                       + [f"{copy['gb_per_s']:.3g}" if copy else ""]) + " |")
    return "\n".join(lines)


def markdown_step(rows: list) -> str:
    """M rows/s of the step-like variants, one line per kind."""
    head = ["alloc", "row B", "regions", "region MiB", "rows/region"] + [v[5:] for v in STEP_VARIANTS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for kind in dict.fromkeys(r["alloc"] for r in rows if "regions" in r):
        cell = {r["variant"]: r for r in rows if "regions" in r and r["alloc"] == kind}
        one = next(iter(cell.values()))
        lines.append("| " + " | ".join([kind, str(one["row_bytes"]), str(one["regions"]),
                                        f"{one['region_bytes'] / 2**20:g}", str(one["rows_per_region_gathered"])]
                                       + [f"{cell[v]['mrows_per_s']:.3g}" if v in cell else "" for v in STEP_VARIANTS])
                     + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- main
def main(argv=None) -> dict:
    args = parse_args(argv)
    dev = args.device
    cuda = dev.type == "cuda"
    why_not = "" if cuda else "no CUDA" if not torch.cuda.is_available() else "--device cpu"
    nbytes = math.ceil(args.buffer_gib * 2**30 / HUGE) * HUGE
    flush = torch.empty(FLUSH_BYTES, dtype=torch.uint8, device=dev) if cuda else None
    thp = {"enabled": read_text("/sys/kernel/mm/transparent_hugepage/enabled"),
           "defrag": read_text("/sys/kernel/mm/transparent_hugepage/defrag"),
           "hugetlb": meminfo_lines("HugePages_Total", "HugePages_Free", "Hugepagesize")}
    print(f"device {dev} ({torch.cuda.get_device_name(dev) if cuda else platform.processor() or 'cpu'}), buffer "
          f"{nbytes / 2**30:.3f} GiB, {args.rows} rows, THP enabled: {thp['enabled']}, defrag: {thp['defrag']}")
    skipped, spans = {}, []
    for s in args.spans_mib:
        if s == "all":
            continue
        if s << 20 > nbytes:
            skipped[f"span {s} MiB"] = f"larger than the buffer ({nbytes >> 20} MiB)"
            print(f"skipped: span {s} MiB, larger than the {nbytes >> 20} MiB buffer")
        else:
            spans.append((s, s << 20))
    for kind in args.step_allocs:
        if kind not in args.allocs:
            skipped[f"step-like gathers, {kind}"] = "not among --allocs"
            print(f"skipped: step-like gathers ({kind}), not among --allocs")
    rows, allocs = [], {}
    for kind in args.allocs:
        t0 = time.perf_counter()
        try:
            host = HostBuffer(kind, nbytes, lock=cuda, why_not=why_not)
        except Unavailable as e:
            skipped[kind] = str(e)
            print(f"skipped: {kind}: {e}")
            continue
        allocs[kind] = {**host.info, "setup_s": round(time.perf_counter() - t0, 2)}
        m, after = host.info["mapping"], host.info.get("mapping_after_lock", {}).get("AnonHugePages", "-")
        print(f"{kind}: {host.info['page_locked']}; mapping AnonHugePages {m.get('AnonHugePages')} (after locking "
              f"{after}), Hugetlb {m.get('Private_Hugetlb')}, KernelPageSize {m.get('KernelPageSize')}; set up in "
              f"{allocs[kind]['setup_s']} s")
        try:
            measure(host.t, kind, args, spans, flush, rows)
            if kind in args.step_allocs:
                measure_step(host.t, kind, args, flush, rows, skipped)
        finally:
            host.free()
            del host
            if cuda:
                torch.cuda.empty_cache()
    print("\nM rows/s (random distinct rows; 'all sorted': the same rows ascending), contiguous copy in GB/s:\n")
    print(markdown(rows, spans))
    if any("regions" in r for r in rows):
        print("\nStep-like gathers, M rows/s (bh-major: _step_gather; region-major: gather_rows as the package launches "
              "it):\n")
        print(markdown_step(rows))
    result = {"benchmark": "bench_zero_copy", "tag": args.tag, "device": str(dev),
              "device_name": torch.cuda.get_device_name(dev) if cuda else "cpu",
              "torch": torch.__version__, "triton": triton.__version__, "python": platform.python_version(),
              "host": platform.node(), "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "thp": thp,
              "config": {"buffer_bytes": nbytes, "rows": args.rows, "row_bytes": args.row_bytes,
                         "lane_bytes": args.lane_bytes, "spans_mib": args.spans_mib, "allocs": args.allocs,
                         "step_allocs": args.step_allocs, "step_regions": args.step_regions,
                         "step_rows": args.step_rows, "step_row_bytes": args.step_row_bytes,
                         "gather_block": GATHER_BLOCK, "gather_warps": GATHER_WARPS,
                         "seed": SEED, "warmup": WARMUP if cuda else 0, "iters": ITERS if cuda else CPU_ITERS,
                         "l2_flush_bytes": FLUSH_BYTES if cuda else 0,
                         "timer": "cuda events" if cuda else "time.perf_counter (Triton interpreter)"},
              "allocs": allocs, "rows": rows, "skipped": skipped}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, out)
    print(f"\nwrote {out}")
    return result


if __name__ == "__main__":
    main()
