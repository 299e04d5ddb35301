"""Batch-invariant `linear` (shadowkv_lab/kernels/matmul.py) vs torch F.linear (cuBLAS) on decode shapes.

    python benchmarks/bench_linear.py [--ms 1 24 72 216] [--reps 50] [--no-sweep] [--out PATH]
    TRITON_INTERPRET=1 python benchmarks/bench_linear.py --smoke        # CPU check: tiny shapes, 2 reps

Shapes: Qwen2.5-Coder-1.5B decode, bf16 (hidden 1536; q/o_proj 1536x1536, k/v_proj 256x1536, gate/up_proj 8960x1536,
down_proj 1536x8960, lm_head 151936x1536), M rows (the batch) in {1, 24, 72, 216}. Per shape and M: median time of
--reps calls (CUDA events around each call, a 256 MiB buffer zeroed before each so the weight comes from HBM and the
launch overlaps the memset), achieved GB/s = weight bytes (N*K*2) / time against the 4,268 GB/s HBM copy ceiling,
relative error vs an fp32 reference, and the invariance probe: is row 0 of f(x) bit-identical to f(x[:1])?
Per model step: 28 layers x the 7 projections + lm_head, summed. --sweep (default on CUDA) also times a few other
fixed configurations of the kernel (each one is batch-invariant; the library uses CONFIG). A CUDA-graph capture of
`linear` is checked against eager. JSON to benchmarks/results/linear_h200.json (--out); the short table prints last.

Needs only torch and triton: the kernels module is imported without the package's __init__ (no transformers).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import types

import torch
import torch.nn.functional as F

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
CEILING_GBS = 4268.0  # H200 HBM device-copy ceiling (read + write), docs/gpu.md
N_LAYERS = 28
# (name, N, K, calls per model step)
SHAPES_1P5B = [
    ("q_proj", 1536, 1536, N_LAYERS), ("k_proj", 256, 1536, N_LAYERS), ("v_proj", 256, 1536, N_LAYERS),
    ("o_proj", 1536, 1536, N_LAYERS), ("gate_proj", 8960, 1536, N_LAYERS), ("up_proj", 8960, 1536, N_LAYERS),
    ("down_proj", 1536, 8960, N_LAYERS), ("lm_head", 151936, 1536, 1),
]
SHAPES_SMOKE = [
    ("q_proj", 64, 64, 2), ("k_proj", 16, 64, 2), ("v_proj", 16, 64, 2), ("o_proj", 64, 64, 2),
    ("gate_proj", 160, 64, 2), ("up_proj", 160, 64, 2), ("down_proj", 64, 160, 2), ("lm_head", 384, 64, 1),
]
# (block_m, block_n, block_k, num_warps, num_stages): alternatives to CONFIG for --sweep
SWEEP = [(64, 32, 128, 4, 4), (64, 128, 64, 4, 4), (64, 64, 64, 4, 6), (64, 32, 256, 4, 3), (32, 64, 128, 4, 4),
         (16, 64, 256, 4, 3), (128, 64, 64, 8, 3)]


def load_matmul():
    """shadowkv_lab.kernels.matmul without running shadowkv_lab/__init__.py (which imports transformers)."""
    if "shadowkv_lab" not in sys.modules:
        pkg = types.ModuleType("shadowkv_lab")
        pkg.__path__ = [os.path.join(ROOT, "shadowkv_lab")]
        sys.modules["shadowkv_lab"] = pkg
    from shadowkv_lab.kernels import matmul

    return matmul


class Timer:
    """Median wall time of single calls: CUDA events with an L2 flush before each call, or perf_counter on CPU."""

    def __init__(self, device: torch.device, reps: int, warmup: int):
        self.cuda = device.type == "cuda"
        self.reps, self.warmup = reps, warmup
        self.flush = torch.empty(256 << 20, dtype=torch.int8, device=device) if self.cuda else None

    def __call__(self, fn) -> float:
        for _ in range(self.warmup):
            fn()
        if not self.cuda:
            ts = []
            for _ in range(self.reps):
                t0 = time.perf_counter()
                fn()
                ts.append((time.perf_counter() - t0) * 1e6)
            return statistics.median(ts)
        torch.cuda.synchronize()
        ev = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(self.reps)]
        for s, e in ev:
            self.flush.zero_()
            s.record()
            fn()
            e.record()
        torch.cuda.synchronize()
        return statistics.median(s.elapsed_time(e) * 1e3 for s, e in ev)


def row0_invariant(f, x) -> bool:
    return bool(torch.equal(f(x)[0], f(x[:1])[0]))


def rel_err(out, ref) -> float:
    return float((out.float() - ref).norm() / ref.norm().clamp_min(1e-30))


def measure(mm, shapes, ms, timer, device, dtype, sweep):
    rows, sweep_rows = [], []
    gen = torch.Generator(device="cpu").manual_seed(0)
    cache = {}
    for name, N, K, count in shapes:
        w = (torch.randn(N, K, generator=gen) / K**0.5).to(device, dtype)
        for M in ms:
            x = torch.randn(M, K, generator=gen).to(device, dtype)
            key = (N, K, M)
            if key not in cache:
                ours = lambda x=x: mm.linear(x, w)  # noqa: E731
                theirs = lambda x=x: F.linear(x, w)  # noqa: E731
                ref = F.linear(x.float(), w.float())
                r = dict(
                    t_ours_us=timer(ours), t_torch_us=timer(theirs),
                    inv_torch=row0_invariant(lambda a: F.linear(a, w), x), inv_ours=row0_invariant(lambda a: mm.linear(a, w), x),
                    err_ours=rel_err(ours(), ref), err_torch=rel_err(theirs(), ref),
                )
                for cfg in sweep:
                    c = mm.LinearConfig(*cfg)
                    f = lambda a, c=c: mm.linear(a, w, config=c)  # noqa: E731
                    try:
                        s = dict(t_us=timer(lambda: f(x)), inv=row0_invariant(f, x), err=rel_err(f(x), ref))
                    except Exception as e:  # e.g. out of shared memory on this GPU
                        s = dict(t_us=None, inv=None, err=None, error=f"{type(e).__name__}: {str(e)[:200]}")
                    sweep_rows.append(dict(config=list(cfg), N=N, K=K, M=M, **s))
                cache[key] = r
            r = dict(name=name, N=N, K=K, M=M, count=count, weight_bytes=N * K * dtype.itemsize, **cache[key])
            r["gbs_ours"] = r["weight_bytes"] / r["t_ours_us"] / 1e3
            r["gbs_torch"] = r["weight_bytes"] / r["t_torch_us"] / 1e3
            rows.append(r)
            print(f"{name:>9} {N:>6}x{K:<5} M={M:<4} ours {r['t_ours_us']:9.1f} us {r['gbs_ours']:7.0f} GB/s | torch "
                  f"{r['t_torch_us']:9.1f} us {r['gbs_torch']:7.0f} GB/s | row0 invariant torch {r['inv_torch']!s:5} "
                  f"ours {r['inv_ours']!s:5} | err ours {r['err_ours']:.1e} torch {r['err_torch']:.1e}", flush=True)
    return rows, sweep_rows


def step_totals(rows, ms):
    out = []
    for M in ms:
        rs = [r for r in rows if r["M"] == M]
        byts = sum(r["weight_bytes"] * r["count"] for r in rs)
        t_o = sum(r["t_ours_us"] * r["count"] for r in rs)
        t_t = sum(r["t_torch_us"] * r["count"] for r in rs)
        out.append(dict(M=M, weight_bytes=byts, ideal_us=byts / CEILING_GBS / 1e3, t_ours_us=t_o, t_torch_us=t_t,
                        gbs_ours=byts / t_o / 1e3, gbs_torch=byts / t_t / 1e3,
                        all_inv_ours=all(r["inv_ours"] for r in rs), all_inv_torch=all(r["inv_torch"] for r in rs)))
    return out


def sweep_totals(sweep_rows, shapes, ms, default_cfg, rows):
    """Per configuration and M: the model-step total (None where a shape failed)."""
    counts = {(N, K): c for _, N, K, c in shapes}
    per_shape = {}
    for _, N, K, _c in shapes:  # the shape's multiplicity within the step (k/v, gate/up share a shape)
        per_shape[(N, K)] = per_shape.get((N, K), 0) + counts[(N, K)]
    out = []
    cfgs = [list(default_cfg)] + sorted({tuple(s["config"]) for s in sweep_rows}, key=SWEEP.index)
    for cfg in cfgs:
        for M in ms:
            if list(cfg) == list(default_cfg):
                sel = {(r["N"], r["K"]): (r["t_ours_us"], r["inv_ours"]) for r in rows if r["M"] == M}
            else:
                sel = {(s["N"], s["K"]): (s["t_us"], s["inv"]) for s in sweep_rows if s["M"] == M and tuple(s["config"]) == cfg}
            ok = all(t is not None for t, _ in sel.values())
            total = sum(sel[k][0] * n for k, n in per_shape.items()) if ok else None
            out.append(dict(config=list(cfg), M=M, t_step_us=total, all_inv=ok and all(i for _, i in sel.values())))
    return out


def graph_check(mm, device, dtype) -> bool | None:
    """Capture linear in a CUDA graph, replay on new input: bit-identical to eager."""
    if device.type != "cuda":
        return None
    w = torch.randn(1536, 1536, device=device, dtype=dtype) / 40
    b = torch.randn(1536, device=device, dtype=dtype)
    x = torch.randn(24, 1536, device=device, dtype=dtype)
    mm.linear(x, w, b)  # compile outside the capture
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        y = mm.linear(x, w, b)
    x.copy_(torch.randn_like(x))
    g.replay()
    torch.cuda.synchronize()
    return bool(torch.equal(y, mm.linear(x, w, b)))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ms", type=int, nargs="+", default=None, help="rows M (default 1 24 72 216; smoke 1 3)")
    ap.add_argument("--reps", type=int, default=None, help="timed calls per point (default 50; smoke 2)")
    ap.add_argument("--warmup", type=int, default=None)
    ap.add_argument("--smoke", action="store_true", help="tiny shapes, 2 reps (CPU under TRITON_INTERPRET=1)")
    ap.add_argument("--sweep", action=argparse.BooleanOptionalAction, default=None,
                    help="also time the other fixed configurations (default: on CUDA, not in --smoke)")
    ap.add_argument("--out", default=None, help="JSON path (default benchmarks/results/linear_h200.json; smoke: tmp)")
    a = ap.parse_args(argv)

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type != "cuda" and os.environ.get("TRITON_INTERPRET", "0") != "1":
        sys.exit("no CUDA device: run with TRITON_INTERPRET=1 (and --smoke) to check the script on CPU")
    mm = load_matmul()
    import triton

    shapes = SHAPES_SMOKE if a.smoke else SHAPES_1P5B
    ms = a.ms or ([1, 3] if a.smoke else [1, 24, 72, 216])
    reps = a.reps or (2 if a.smoke else 50)
    warmup = a.warmup if a.warmup is not None else (1 if a.smoke else 10)
    sweep = SWEEP if (a.sweep if a.sweep is not None else (device.type == "cuda" and not a.smoke)) else []
    out = a.out or (os.path.join(tempfile.gettempdir(), "linear_smoke.json") if a.smoke
                    else os.path.join(ROOT, "benchmarks", "results", "linear_h200.json"))
    dtype = torch.bfloat16
    c = mm.CONFIG
    default_cfg = (c.block_m, c.block_n, c.block_k, c.num_warps, c.num_stages)
    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (Triton interpreter)"
    print(f"{dev_name}; torch {torch.__version__}, triton {triton.__version__}; bf16; CONFIG {c}; reps {reps}")

    timer = Timer(device, reps, warmup)
    rows, sweep_rows = measure(mm, shapes, ms, timer, device, dtype, sweep)
    steps = step_totals(rows, ms)
    sweeps = sweep_totals(sweep_rows, shapes, ms, default_cfg, rows) if sweep else []
    graph_ok = graph_check(mm, device, dtype)

    res = dict(benchmark="bench_linear", device=dev_name, torch=torch.__version__, triton=triton.__version__,
               dtype="bfloat16", smoke=a.smoke, config=dict(zip(("block_m", "block_n", "block_k", "num_warps", "num_stages"),
                                                                 default_cfg)),
               ceiling_gbs=CEILING_GBS, reps=reps, timestamp=time.strftime("%Y-%m-%dT%H:%M:%S"),
               cuda_graph_bit_identical=graph_ok, shapes=rows, step=steps, sweep=sweep_rows, sweep_step=sweeps)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump(res, f, indent=1)

    if sweeps:
        print("\nsweep: model-step linear time (us) per fixed configuration (bm, bn, bk, warps, stages); * = CONFIG")
        print(f"{'config':>22} " + " ".join(f"{'M=' + str(M):>10}" for M in ms))
        for cfg in dict.fromkeys(tuple(s["config"]) for s in sweeps):
            cells = [next(s for s in sweeps if tuple(s["config"]) == cfg and s["M"] == M) for M in ms]
            txt = " ".join(f"{'failed' if s['t_step_us'] is None else format(s['t_step_us'], '.0f') + ('' if s['all_inv'] else '!'):>10}"
                           for s in cells)
            print(f"{str(cfg) + ('*' if cfg == default_cfg else ' '):>22} {txt}")
        print("  (! = a shape's row 0 was not bit-identical to the M = 1 result)")
    print(f"\nwrote {out}; CUDA graph replay bit-identical to eager: {graph_ok}")
    print(f"\nmodel step ({len(shapes) - 1} projections x {shapes[0][3]} layers + lm_head), weight bytes once, ceiling "
          f"{CEILING_GBS:,.0f} GB/s")
    print(f"{'M':>4} {'MB':>7} {'ideal us':>9} {'ours us':>9} {'GB/s':>6} {'%ceil':>6} {'torch us':>9} {'GB/s':>6} "
          f"{'%ceil':>6} {'ours/torch':>10} {'row0 inv ours/torch':>20}")
    for s in steps:
        print(f"{s['M']:>4} {s['weight_bytes'] / 1e6:>7.1f} {s['ideal_us']:>9.1f} {s['t_ours_us']:>9.1f} {s['gbs_ours']:>6.0f} "
              f"{100 * s['gbs_ours'] / CEILING_GBS:>5.1f}% {s['t_torch_us']:>9.1f} {s['gbs_torch']:>6.0f} "
              f"{100 * s['gbs_torch'] / CEILING_GBS:>5.1f}% {s['t_ours_us'] / s['t_torch_us']:>10.2f} "
              f"{str(s['all_inv_ours']) + '/' + str(s['all_inv_torch']):>20}")
    return res


if __name__ == "__main__":
    main()
