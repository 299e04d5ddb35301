"""Per-layer decode step, Llama-3.1-8B shapes (32 q heads, 8 KV heads, d 128), random data, on the Triton kernels.

    python benchmarks/bench_decode_step.py [--contexts 32768 65536 131072] [--batches 1 8 32] [--alpha 0.9]

Methods (one layer, B sequences):
  full      all K/V bf16 on the GPU; our split-K decode attention and torch SDPA (the faster one is the baseline)
  shadowkv  rank 160 U/SV on GPU, chunk 8, 48 outlier chunks + 32 local, bf16 landmarks, budget 2048 (1.5625% at
            128k), values bf16 in pinned host memory read zero-copy
  yakv_fp8  chunk 1, 2-bit HIGGS (EDEN4-256) landmarks, budget 3.125%, local 64, K and V fp8 in pinned host memory
  yakv_h4   the same with K and V HIGGS EDEN2-256 (group 1024, token rows) in pinned host memory
each with the cache-hit policy (previous step's rows stay resident, only misses cross PCIe) and without it (nocache).
Query stream: per query head an AR(1) process in pre-RoPE space, q_t = alpha q_{t-1} + sqrt(1 - alpha^2) xi_t
(xi iid N(0, I)); keys N(0, I) plus a per-head mean direction. alpha sets the step-to-step hit rate.
Each step is captured in a CUDA graph; every replay gets the next query; median of the replays, CUDA events.
Bound: max(HBM bytes / 4,268 GB/s, PCIe bytes / 55.5 GB/s) with the minimal bytes of the step (landmarks read once,
rows fetched once, resident K/V read once); measured misses set the PCIe bytes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from timing import PhaseClock, call_ms  # noqa: E402
from to_rows import decode_step_rows, stamp  # noqa: E402
from shadowkv_lab.results import STEP_PHASES as PHASES, write_bench_rows  # noqa: E402

from shadowkv_lab.kernels.attention import decode_attention  # noqa: E402
from shadowkv_lab.kernels.common import rope_table_from_freqs  # noqa: E402
from shadowkv_lab.kernels.fetch import ResidentSet, gather_rows, higgs_rows, lowrank_rows, union_rows  # noqa: E402
from shadowkv_lab.kernels.scoring import FMT_HIGGS, FMT_NATIVE, Landmarks, landmark_scores, select_topk  # noqa: E402
from shadowkv_lab.kernels.scoring_lut import higgs_lut, landmark_scores_lut  # noqa: E402

HBM, PCIE = 4268e9, 55.5e9
HQ, H, D = 32, 8, 128
G = HQ // H
R, C_SKV, OUT_SKV, LOC_SKV, BUD_SKV = 160, 8, 48, 32, 2048
LOC_YAKV, FRAC_YAKV = 64, 0.03125
GEN = 16  # generated tokens already in the buffer
N_TIME = 15  # timed replays per configuration (--n-time)
SWEEP_SCORING = False  # --sweep-scoring
PHASES_TOO = False  # --phases: also time each offloaded step's phases eagerly
SCORER = "exact"  # --scorer: HIGGS landmarks scored reference-exact (kernels/scoring.py) or by lookup table
DEV = torch.device("cuda" if torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET", "0") != "1" else "cpu")
CUDA = DEV.type == "cuda"  # else: a CPU smoke run under TRITON_INTERPRET=1 (tiny sizes, wall-clock timing)


def llama_table(n):
    """Llama-3.1 RoPE (theta 500000, llama3 scaling factor 8, low 1, high 4, original 8192) as a bf16 table."""
    inv = 1.0 / (500000.0 ** (torch.arange(0, D, 2, dtype=torch.float32, device=DEV) / D))
    wl = 2 * math.pi / inv
    low, high = 8192 / 1.0, 8192 / 4.0
    smooth = (8192 / wl - 1.0) / (4.0 - 1.0)
    inv = torch.where(wl > low, inv / 8, torch.where(wl < high, inv, (1 - smooth) * inv / 8 + smooth * inv))
    return rope_table_from_freqs(inv, n, torch.bfloat16)


def fill_pinned(shape, dtype, kind):
    """Pinned host tensor filled chunk by chunk from the GPU (normal values, fp8 bits of normals, or random bytes)."""
    t = torch.empty(shape, dtype=dtype, pin_memory=CUDA)
    flat = t.view(-1)
    step = 1 << 28
    for i in range(0, flat.numel(), step):
        n = min(step, flat.numel() - i)
        if kind == "normal":
            x = torch.randn(n, device=DEV).to(dtype)
        elif kind == "fp8":
            x = torch.randn(n, device=DEV).to(torch.float8_e4m3fn).view(torch.uint8)
        elif kind == "scale":
            x = (torch.rand(n, device=DEV) * 30 + 10).to(dtype)
        else:
            x = torch.randint(0, 256, (n,), device=DEV, dtype=torch.uint8)
        flat[i : i + n].copy_(x)
    sync()
    return t


class QueryStream:
    """Post-RoPE queries, AR(1) per query head: q_t = alpha q_{t-1} + sqrt(1 - alpha^2) xi_t, scaled by 1.5.
    (The random keys carry no positional structure, so the queries are not rotated per step either.)"""

    def __init__(self, BH, alpha, seed=0):
        self.g = torch.Generator(device=DEV).manual_seed(seed)
        self.alpha = alpha
        self.q = torch.randn(BH, G, D, device=DEV, generator=self.g)

    def next(self):
        a = self.alpha
        self.q = a * self.q + math.sqrt(1 - a * a) * torch.randn(self.q.shape, device=DEV, generator=self.g)
        return (self.q * 1.5).to(torch.bfloat16)


def sync():
    if CUDA:
        torch.cuda.synchronize()


def timed_steps(step, q_static, stream, n_warm=3, n_time=None, graph=True):
    """Warm up eagerly, capture `step` in a CUDA graph, replay with fresh queries; -> (median ms, all ms)."""
    n_time = n_time or N_TIME
    for _ in range(n_warm):
        q_static.copy_(stream.next())
        step()
    sync()
    fn = step
    if graph and CUDA:
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            q_static.copy_(stream.next())
            step()
        torch.cuda.current_stream().wait_stream(s)
        gr = torch.cuda.CUDAGraph()
        with torch.cuda.graph(gr):
            step()
        fn = gr.replay
    else:  # same number of executed steps as the graph path (one warm-up step)
        q_static.copy_(stream.next())
        step()
    times = []
    for _ in range(n_time):
        q_static.copy_(stream.next())
        times.append(call_ms(fn, CUDA))
    return sorted(times)[len(times) // 2], times


def bench_full(L, B, kv, stream_alpha, table):
    BH = B * H
    k, v = kv[0][:BH, :L], kv[1][:BH, :L]
    q = torch.empty(BH, G, D, device=DEV, dtype=torch.bfloat16)
    out = {}
    qs = QueryStream(BH, stream_alpha)
    out["triton_ms"], _ = timed_steps(lambda: decode_attention(q, [(k, v)], D ** -0.5), q, qs)
    k4, v4 = k.view(B, H, L, D), v.view(B, H, L, D)
    out["sdpa_ms"], _ = timed_steps(lambda: F.scaled_dot_product_attention(q.view(B, H, G, D), k4, v4, scale=D ** -0.5), q, qs)
    hbm = 2 * BH * L * D * 2
    ms = min(out["triton_ms"], out["sdpa_ms"])
    return dict(ms=ms, hbm_bytes=hbm, pcie_bytes=0, bound_ms=hbm / HBM * 1e3, **out)


def offload_state(method, L, B, bufs):
    """GPU-side state of one layer for B sequences of length L (random), and the host sources (views)."""
    BH = B * H
    g = torch.Generator(device=DEV).manual_seed(L + B)
    st = dict(method=method, BH=BH)
    if method == "shadowkv":
        n_chunks = L // C_SKV - LOC_SKV // C_SKV
        M = n_chunks - OUT_SKV
        st["M"], st["K"], st["c"] = M, min(BUD_SKV, M // 2 * C_SKV), C_SKV
        lm = (torch.randn(BH, M, D, device=DEV, generator=g) + torch.randn(BH, 1, D, device=DEV, generator=g)).to(torch.bfloat16)
        st["lm"] = Landmarks(FMT_NATIVE, lm)
        cand = torch.sort(torch.rand(BH, n_chunks, device=DEV, generator=g).argsort(-1)[:, :M], -1).values
        st["cand"] = cand
        st["U"] = bufs["U"][:B, : n_chunks * C_SKV]
        st["SV"] = (torch.randn(BH, R, D, device=DEV, generator=g) / R ** 0.5).to(torch.bfloat16)
        vals = bufs["v_bf16"]
        st["v_src"] = (vals, (vals.stride(0), vals.stride(1), vals.stride(2)))
        n_res = OUT_SKV * C_SKV + LOC_SKV
    else:
        M = L - LOC_YAKV
        st["M"], st["K"], st["c"] = M, int(FRAC_YAKV * L), 1
        codes = torch.randint(0, 256, (BH, M, D // 4), device=DEV, dtype=torch.uint8, generator=g)
        scales = torch.rand(BH, M, device=DEV, generator=g) * 10 + 5
        st["lm"] = Landmarks(FMT_HIGGS, codes, scales, bufs["grid4"], 4)
        st["cand"] = None
        n_res = LOC_YAKV
    K = st["K"]
    st["res_k"] = torch.randn(BH, n_res, D, device=DEV, generator=g).to(torch.bfloat16)
    st["res_v"] = torch.randn(BH, n_res, D, device=DEV, generator=g).to(torch.bfloat16)
    st["gen_k"] = torch.randn(BH, GEN, D, device=DEV, generator=g).to(torch.bfloat16)
    st["gen_v"] = torch.randn(BH, GEN, D, device=DEV, generator=g).to(torch.bfloat16)
    st["k_buf"] = torch.empty(BH, K, D, device=DEV, dtype=torch.bfloat16)
    st["v_buf"] = torch.empty(BH, K, D, device=DEV, dtype=torch.bfloat16)
    st["n_res"] = n_res + GEN
    return st


def _no_mark(name):
    pass


def phase_ms(step, q, stream, n_time=None) -> dict:
    """Median device ms of each phase of `step` run eagerly (PhaseClock), and of the whole eager step. The phases add
    up to the eager step, which is slower than the replayed graph by the launches the graph saves."""
    clock, per = PhaseClock(CUDA), []
    for _ in range(n_time or N_TIME):
        q.copy_(stream.next())
        sync()
        clock.start()
        step(clock.mark)
        per.append(clock.ms())
    med = {name: sorted(p[name] for p in per)[len(per) // 2] for name in PHASES}
    med["eager"] = sorted(sum(p.values()) for p in per)[len(per) // 2]
    return med


def make_step(st, q, table, bufs, cache: bool, rule="softmax_max"):
    BH, K, c = st["BH"], st["K"], st["c"]
    method = st["method"]
    rs = ResidentSet(BH, K, DEV)
    st["rs"] = rs
    union_ctr = torch.zeros((), dtype=torch.long, device=DEV)
    st["union_ctr"] = union_ctr
    n_sel = K // c
    arange = torch.arange(K, device=DEV).expand(BH, K)

    lm = st["lm"]
    use_lut = SCORER == "lut" and lm.fmt == FMT_HIGGS

    def step(mark=_no_mark):
        if use_lut:  # rotate the query once, score the codes through its table (kernels/scoring_lut.py)
            lut = higgs_lut(q, lm.grid, rule, lm.signs)
            score = landmark_scores_lut(lm.data, lm.scales, lut, D ** -0.5, rule, bf16_probs=rule == "softmax_max")
        else:
            score = landmark_scores(lm, q, D ** -0.5, rule, bf16_probs=rule == "softmax_max")
        mark("score")
        pos = select_topk(score, n_sel, st["cand"], c, bf16_scores=rule == "softmax_max")
        mark("select")
        if cache:
            src, slots, n = rs.update(pos)
        else:
            src, slots, n = pos, arange, None
            rs.fetched += pos.numel()
            rs.requested += pos.numel()
        mark("hits")
        if method == "shadowkv":
            lowrank_rows(st["U"], st["SV"], src, st["k_buf"], table, slots, n)
            vsrc, strides = st["v_src"]
            gather_rows(vsrc, strides, H, src, st["v_buf"], slots, n, 0)
        elif method == "yakv_fp8":
            kv = bufs["kv_fp8"]
            strides = (kv.stride(1), D, kv.stride(2))
            gather_rows(kv[0], strides, H, src, st["k_buf"], slots, n, 1, table)
            gather_rows(kv[1], strides, H, src, st["v_buf"], slots, n, 1)
        else:  # yakv_h4: distinct missed tokens per sequence, dequantized once, then split per head
            uniq, n_u, inv = union_rows(src, n, H)
            union_ctr.add_(n_u.sum())
            for which, out, tab in ((0, st["k_buf"], table), (1, st["v_buf"], None)):
                ubuf = bufs["ubuf"][: uniq.shape[0], : uniq.shape[1]]
                higgs_rows(bufs["h4_codes"][which], bufs["h4_scales"][which], bufs["grid2"], H * D, uniq, n_u, ubuf)
                gather_rows(ubuf, (ubuf.stride(0), D, H * D), H, inv, out, slots, n, 0, tab, src)
        mark("fetch")
        out = decode_attention(q, [(st["res_k"], st["res_v"]), (st["k_buf"], st["v_buf"]), (st["gen_k"], st["gen_v"])], D ** -0.5)
        mark("attend")
        return out

    return step


def bytes_of(st, fetched_rows, union_rows_n):
    """Minimal HBM and PCIe bytes of one step (all B sequences), given the rows fetched (and distinct tokens)."""
    BH, M, K = st["BH"], st["M"], st["K"]
    method = st["method"]
    lm = st["lm"].nbytes
    scores = BH * M * 4 * 2  # written once, read once by top-k
    attn = BH * (st["n_res"] + K) * D * 2 * 2
    writes = fetched_rows * D * 2 * 2  # new rows into the step buffer (K and V)
    if method == "shadowkv":
        hbm = lm + scores + attn + writes + fetched_rows * R * 2 + BH * R * D * 2
        pcie = fetched_rows * D * 2
    elif method == "yakv_fp8":
        hbm = lm + scores + attn + writes
        pcie = fetched_rows * D * 2  # fp8 K and V: 128 B each
    else:
        hbm = lm + scores + attn + writes + union_rows_n * H * D * 2 * 2 * 2  # union buffer write + read
        pcie = union_rows_n * (H * D // 2 + 4) * 2
    return hbm, pcie


def bench_offload(method, L, B, cache, alpha, table, bufs, rule="softmax_max"):
    st = offload_state("shadowkv" if method == "shadowkv" else method, L, B, bufs)
    st["method"] = method
    q = torch.empty(st["BH"], G, D, device=DEV, dtype=torch.bfloat16)
    step = make_step(st, q, table, bufs, cache, rule)
    qs = QueryStream(st["BH"], alpha, seed=B)
    rs = st["rs"]

    def reset():
        rs.fetched.zero_(), rs.requested.zero_(), st["union_ctr"].zero_()

    # warm-up steps settle the resident set; counters are reset right before the timed replays
    for _ in range(4):
        q.copy_(qs.next())
        step()
    reset()
    n_time = N_TIME
    ms, _ = timed_steps(step, q, qs, n_warm=0, n_time=n_time)
    # timed_steps ran 1 capture-warm-up step + 1 captured (not executed) + n_time replays
    steps_run = n_time + 1
    fetched = float(rs.fetched) / steps_run
    union_n = float(st["union_ctr"]) / steps_run
    hbm, pcie = bytes_of(st, fetched, union_n)
    bound = max(hbm / HBM, pcie / PCIE) * 1e3
    res = dict(ms=ms, hbm_bytes=hbm, pcie_bytes=pcie, bound_ms=bound, sum_bound_ms=(hbm / HBM + pcie / PCIE) * 1e3,
               hit_rate=rs.hit_rate() if cache else 0.0, rows_fetched=fetched, rows_selected=st["BH"] * st["K"],
               union_tokens=union_n, pcie_gbs=pcie / ms / 1e6)
    if PHASES_TOO:  # after the counters were read: these eager steps are not counted in the hit rate
        res["phases"] = phase_ms(step, q, qs)
    del st, step
    return res


def bench_scoring(L, B, bufs, table):
    """Per-landmark time of the scoring kernels: bf16 vs fp8 vs 2-bit HIGGS landmarks, both rules; and top-k."""
    BH, M = B * H, L
    g = torch.Generator(device=DEV).manual_seed(1)
    q = torch.randn(BH, G, D, device=DEV, generator=g).to(torch.bfloat16)
    x = torch.randn(BH, M, D, device=DEV, generator=g)
    fmts = {
        "bf16": Landmarks(FMT_NATIVE, x.to(torch.bfloat16)),
        "fp8": Landmarks(1, x.to(torch.float8_e4m3fn).view(torch.uint8)),
        "higgs2": Landmarks(FMT_HIGGS, torch.randint(0, 256, (BH, M, D // 4), device=DEV, dtype=torch.uint8, generator=g),
                            torch.rand(BH, M, device=DEV, generator=g) + 1, bufs["grid4"], 4),
    }
    del x
    rows = []
    qs = QueryStream(BH, 0.9)
    qq = torch.empty_like(q)
    for name, lm in fmts.items():
        for rule in ("softmax_max", "mean_dot"):
            ms, _ = timed_steps(lambda: landmark_scores(lm, qq, D ** -0.5, rule, rule == "softmax_max"), qq, qs)
            passes = 2 if rule == "softmax_max" else 1
            rows.append(dict(landmarks=name, rule=rule, ms=ms, ns_per_landmark=ms * 1e6 / (BH * M),
                             bytes_per_landmark=lm.nbytes / (BH * M), gbs=passes * lm.nbytes / ms / 1e6))
    lm = fmts["higgs2"]  # the lookup-table scorer: the query's table built inside the timed step, as a decode step does
    for rule in ("softmax_max", "mean_dot"):
        def lut_step(rule=rule):
            return landmark_scores_lut(lm.data, lm.scales, higgs_lut(qq, lm.grid, rule), D ** -0.5, rule, rule == "softmax_max")
        ms, _ = timed_steps(lut_step, qq, qs)
        passes = 2 if rule == "softmax_max" else 1
        rows.append(dict(landmarks="higgs2_lut", rule=rule, ms=ms, ns_per_landmark=ms * 1e6 / (BH * M),
                         bytes_per_landmark=lm.nbytes / (BH * M), gbs=passes * lm.nbytes / ms / 1e6))
    if SWEEP_SCORING:  # tile size x warps x stored logits, softmax-max (the default is the first row of each format)
        for name, stores, bms in (("bf16", (False,), (128, 64)), ("higgs2", (True, False), (128, 64, 32))):
            lm = fmts[name]
            for store in stores:
                for bm in bms:
                    for nw in (8, 4):
                        ms, _ = timed_steps(lambda: landmark_scores(lm, qq, D ** -0.5, "softmax_max", True, block_m=bm,
                                                                    num_warps=nw, store_logits=store), qq, qs)
                        rows.append(dict(landmarks=name, rule=f"softmax_max bm{bm} w{nw}{' stored' if store else ''}",
                                         ms=ms, ns_per_landmark=ms * 1e6 / (BH * M), bytes_per_landmark=lm.nbytes / (BH * M)))
                        print(f"  sweep {name} {rows[-1]['rule']}: {rows[-1]['ns_per_landmark']:.3f} ns/landmark", flush=True)
    sc = torch.rand(BH, M, device=DEV)
    ms, _ = timed_steps(lambda: torch.topk(sc, int(FRAC_YAKV * L), -1, sorted=False), qq, qs)
    rows.append(dict(landmarks="-", rule="topk(3.125%)", ms=ms, ns_per_landmark=ms * 1e6 / (BH * M)))
    return rows


def bench_zero_copy(bufs, n_rows=1 << 18):
    """PCIe read rate of the zero-copy row gather (random rows of 128..1024 B from pinned memory), per launch shape
    (rows per program, warps), next to a plain contiguous pinned -> device copy of the same bytes. The best shape
    for 256 B rows becomes the default of the step benchmarks below."""
    import shadowkv_lab.kernels.fetch as fetch

    src = bufs["v_bf16"]
    flat = src.view(-1)
    rows, best = [], {}

    class _S:
        def next(self):
            return torch.zeros(1, device=DEV)

    q = torch.empty(1, device=DEV)
    for row_bytes in (128, 256, 512, 1024):
        d = row_bytes // 2
        n_src = flat.numel() // d
        view = flat[: n_src * d].view(1, n_src, d)
        idx = torch.randint(0, n_src, (1, n_rows), device=DEV)
        out = torch.empty(1, n_rows, d, device=DEV, dtype=torch.bfloat16)
        nb = n_rows * row_bytes
        dst = torch.empty(nb // 2, device=DEV, dtype=torch.bfloat16)
        ms_c, _ = timed_steps(lambda: dst.copy_(flat[: nb // 2], non_blocking=True), q, _S(), graph=False)
        for block, warps in ((16, 4), (32, 4), (64, 4), (128, 4), (128, 8), (256, 8)):
            ms, _ = timed_steps(lambda: gather_rows(view, (0, 0, d), 1, idx, out, block=block, num_warps=warps), q, _S(), graph=False)
            rows.append(dict(row_bytes=row_bytes, block=block, warps=warps, rows=n_rows, zero_copy_gbs=nb / ms / 1e6,
                             mrows_per_s=n_rows / ms / 1e3, memcpy_gbs=nb / ms_c / 1e6))
            if nb / ms > best.get(row_bytes, (0,))[0]:
                best[row_bytes] = (nb / ms, block, warps)
        b = best[row_bytes]
        print(f"zero-copy gather {row_bytes:5d} B rows: best {b[0] / 1e6:6.1f} GB/s ({n_rows / (nb / b[0]) / 1e3:.0f} M rows/s,"
              f" block {b[1]}, {b[2]} warps)   contiguous copy {nb / ms_c / 1e6:6.1f} GB/s", flush=True)
    fetch.GATHER_BLOCK, fetch.GATHER_WARPS = best[256][1], best[256][2]
    return rows


def hit_rate_sweep(L, alphas, table, bufs, steps=12):
    """Hit rate of the selection stream alone (scores + top-k + resident set), B = 1, per alpha and method."""
    rows = []
    for method in ("shadowkv", "yakv_fp8"):
        for a in alphas:
            st = offload_state("shadowkv" if method == "shadowkv" else method, L, 1, bufs)
            q = torch.empty(H, G, D, device=DEV, dtype=torch.bfloat16)
            qs = QueryStream(H, a, seed=3)
            rs = ResidentSet(H, st["K"], DEV)
            for t in range(steps):
                q.copy_(qs.next())
                score = landmark_scores(st["lm"], q, D ** -0.5, "softmax_max", True)
                rs.update(select_topk(score, st["K"] // st["c"], st["cand"], st["c"]))
                if t == 1:
                    rs.fetched.zero_(), rs.requested.zero_()
            rows.append(dict(method=method, L=L, alpha=a, hit_rate=rs.hit_rate()))
    return rows


def save(results, out, st, sizes):
    """decode_step.json, and decode_step.rows.csv: the same numbers as benchmark rows (results.BENCH_COLUMNS; st:
    the run's stamp, sizes: the context and batch the scoring kernel was timed at)."""
    with open(os.path.join(out, "decode_step.json"), "w") as f:
        json.dump(results, f, indent=1)
    write_bench_rows(decode_step_rows(results, st, *sizes), os.path.join(out, "decode_step.rows.csv"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--contexts", type=int, nargs="+", default=[32768, 65536, 131072])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--alpha", type=float, default=0.9)
    ap.add_argument("--sweep-alphas", type=float, nargs="*", default=[0.5, 0.8, 0.9, 0.95, 0.98])
    ap.add_argument("--methods", nargs="+", default=["full", "shadowkv", "yakv_fp8", "yakv_h4"])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    ap.add_argument("--n-time", type=int, default=15)
    ap.add_argument("--sweep-scoring", action="store_true", help="also time the scoring kernel's tile sizes, warps and stored logits")
    ap.add_argument("--scorer", choices=["exact", "lut"], default="exact", help="HIGGS landmark scoring in the YAKV "
                    "steps: the reference-exact kernel or the lookup-table kernel")
    ap.add_argument("--phases", action="store_true", help="also time each offloaded step's phases (score, select, "
                    "hits, fetch, attend) eagerly, one CUDA event between phases")
    ap.add_argument("--scoring-only", action="store_true", help="hit rates and scoring only, no decode steps")
    args = ap.parse_args()
    global N_TIME, SWEEP_SCORING, SCORER, PHASES_TOO
    N_TIME, SWEEP_SCORING, SCORER, PHASES_TOO = args.n_time, args.sweep_scoring, args.scorer, args.phases
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(0)
    Lmax, Bmax = max(args.contexts), max(args.batches)
    t0 = time.time()
    table = llama_table(Lmax + 4096)
    from shadowkv_lab.quant import load_grid

    bufs = dict(grid4=load_grid(4, 256, DEV), grid2=load_grid(2, 256, DEV))
    off = [m for m in args.methods if m != "full"]
    if "shadowkv" in off:
        bufs["v_bf16"] = fill_pinned((Bmax, H, Lmax, D), torch.bfloat16, "normal")
        bufs["U"] = (torch.randn(Bmax, Lmax, R, device=DEV) / 4).to(torch.bfloat16)
    if "yakv_fp8" in off:
        bufs["kv_fp8"] = fill_pinned((2, Bmax, Lmax, H * D), torch.uint8, "fp8")
    if "yakv_h4" in off:
        bufs["h4_codes"] = fill_pinned((2, Bmax, Lmax, H * D // 2), torch.uint8, "bytes")
        bufs["h4_scales"] = fill_pinned((2, Bmax, Lmax, 1), torch.float32, "scale")
        bufs["ubuf"] = torch.empty(Bmax, H * int(FRAC_YAKV * Lmax), H * D, device=DEV, dtype=torch.bfloat16)
    print(f"setup {time.time() - t0:.1f}s", flush=True)

    results = dict(config=vars(args), device=torch.cuda.get_device_name() if CUDA else "cpu (smoke)", hbm=HBM, pcie=PCIE, steps=[], scoring=[], hits=[])
    st, sizes = stamp("bench_decode_step", results["device"]), (Lmax, min(8, Bmax))  # bench_scoring's sizes
    results["hits"] = hit_rate_sweep(Lmax, args.sweep_alphas, table, bufs)
    for r in results["hits"]:
        print(f"hit rate {r['method']:9s} L={r['L']} alpha={r['alpha']:.2f}: {r['hit_rate']:.3f}", flush=True)
    if "v_bf16" in bufs:
        results["zero_copy"] = bench_zero_copy(bufs, n_rows=(1 << 18) if CUDA else 256)
    results["scoring"] = bench_scoring(Lmax, min(8, Bmax), bufs, table)
    save(results, args.out, st, sizes)
    for L in ([] if args.scoring_only else args.contexts):
        kv = None
        if "full" in args.methods:
            kv = [torch.randn(Bmax * H, L, D, device=DEV).to(torch.bfloat16) for _ in range(2)]
        for B in args.batches:
            for method in args.methods:
                for cache in ([None] if method == "full" else [True, False]):
                    if method == "full":
                        r = bench_full(L, B, kv, args.alpha, table)
                        name = "full"
                    else:
                        r = bench_offload(method, L, B, cache, args.alpha, table, bufs)
                        name = method + ("" if cache else "_nocache")
                    r.update(method=name, L=L, B=B, ratio=r["ms"] / r["bound_ms"], tokens_per_s_layer=B / r["ms"] * 1e3)
                    results["steps"].append(r)
                    save(results, args.out, st, sizes)
                    print(f"{name:17s} L={L:6d} B={B:2d} {r['ms']:8.3f} ms  bound {r['bound_ms']:7.3f} ms  x{r['ratio']:.2f}"
                          f"  hit {r.get('hit_rate', 0):.2f}  HBM {r['hbm_bytes'] / 1e6:8.1f} MB  PCIe {r['pcie_bytes'] / 1e6:7.1f} MB",
                          flush=True)
                    if CUDA:
                        torch.cuda.empty_cache()
        del kv
        if CUDA:
            torch.cuda.empty_cache()
    save(results, args.out, st, sizes)
    with open(os.path.join(args.out, "decode_step.csv" if SCORER == "exact" else f"decode_step_{SCORER}.csv"), "w") as f:
        keys = ["method", "L", "B", "ms", "bound_ms", "ratio", "hit_rate", "hbm_bytes", "pcie_bytes", "pcie_gbs", "tokens_per_s_layer"]
        f.write(",".join(keys) + "\n")
        for r in results["steps"]:
            f.write(",".join(str(r.get(k, "")) for k in keys) + "\n")
    print("\nscoring (per landmark):")
    for r in results["scoring"]:
        print(f"  {r['landmarks']:7s} {r['rule']:13s} {r['ms']:7.3f} ms  {r['ns_per_landmark']:6.3f} ns/landmark"
              + (f"  {r['gbs']:6.0f} GB/s" if "gbs" in r else ""))
    print(f"\n{'method':17s} {'L':>7s} {'B':>3s} {'ms':>8s} {'bound':>8s} {'x':>5s} {'hit':>5s} {'tok/s/layer':>12s}")
    for r in results["steps"]:
        print(f"{r['method']:17s} {r['L']:7d} {r['B']:3d} {r['ms']:8.3f} {r['bound_ms']:8.3f} {r['ratio']:5.2f} "
              f"{r.get('hit_rate', 0):5.2f} {r['tokens_per_s_layer']:12.0f}")
    timed = [r for r in results["steps"] if "phases" in r]
    if timed:
        print(f"\nphases, eager (ms): {'method':17s} {'L':>7s} {'B':>3s} " + " ".join(f"{p:>7s}" for p in (*PHASES, "eager"))
              + f" {'graph':>7s}")
        for r in timed:
            print(f"{'':20s}{r['method']:17s} {r['L']:7d} {r['B']:3d} "
                  + " ".join(f"{r['phases'][p]:7.3f}" for p in (*PHASES, "eager")) + f" {r['ms']:7.3f}")
    print(f"total {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
