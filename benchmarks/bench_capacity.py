"""Largest batch at 128k context under an 80 GB GPU memory cap: full vs ShadowKV vs YAKV, Llama-3.1-8B.

    python benchmarks/bench_capacity.py [--context 131072] [--gen 1024] [--cap-gb 80] [--verify]
    python benchmarks/bench_capacity.py --steps benchmarks/results/decode_step_h100.json --tag h100   # another card's steps

Analytic: GPU bytes of one sequence = layers x (bytes/token/layer x tokens + per-layer constants) + per-sequence
transients, with the kernels' storage layouts (landmarks in their stored format, a step buffer of the selected
K/V); weights 16 GB. The stacked decode step (cache/batched.py) also holds each stack's landmarks dequantized in the
model dtype, which this model does not count. --verify (CUDA) allocates those tensors on the GPU under a memory cap
of cap-gb: the predicted batch must fit and one more sequence must not.
Decode tokens/s estimate: B / (layers x per-layer step time(B) + weights / HBM bandwidth), the step time taken from
results/decode_step.json at this context (linear in B between measured batches, extrapolated past the largest).
Writes results/capacity.json and the same numbers as benchmark rows, results/capacity.rows.csv (capacity_TAG.* with
--tag). The weights' read time uses the step file's own HBM rate (the one its bounds use).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from to_rows import capacity_rows, stamp  # noqa: E402
from shadowkv_lab.results import write_bench_rows  # noqa: E402

LAYERS, H, D, HQ = 32, 8, 128, 32
WEIGHTS = 16e9
HBM = 4268e9


def layouts(L: int, T: int) -> dict:
    """Per method: {tensor name: (bytes per sequence per layer, shared-across-layers?)}; tokens L prompt + T new."""
    row = H * D * 2  # one token of K or V, bf16, all heads
    gen = 2 * T * row  # generated tokens, exact K and V (every method)
    skv_c, skv_r, skv_b, skv_out, skv_loc = 8, 160, 2048, 48, 32
    n_chunks = L // skv_c - skv_loc // skv_c
    M = n_chunks - skv_out
    y_b, y_loc = int(0.03125 * L), 64
    yM = L - y_loc
    return {
        "full": {"kv": (2 * L * row, False), "generated": (gen, False)},
        "shadowkv": {
            "U (rank 160, bf16)": (n_chunks * skv_c * skv_r * 2, False),
            "landmarks (bf16, 1 per 8 tokens)": (H * M * D * 2, False),
            "candidate ids (int64)": (H * M * 8, False),
            "SV": (H * skv_r * D * 2, False),
            "outliers K+V": (2 * skv_out * skv_c * row, False),
            "local K+V": (2 * (L - n_chunks * skv_c) * row, False),
            "resident step buffer K+V": (2 * skv_b * row, False),
            "generated": (gen, False),
            "scores (transient)": (H * M * 4 + H * 2 * 16 * (M // 128 + 1) * 4, True),
        },
        "yakv": {
            "landmarks (2-bit HIGGS codes)": (H * yM * D // 4, False),
            "landmark scales (fp32)": (H * yM * 4, False),
            "candidate ids (int64)": (H * yM * 8, False),
            "local K+V": (2 * y_loc * row, False),
            "resident step buffer K+V": (2 * y_b * row, False),
            "generated": (gen, False),
            "scores (transient)": (H * yM * 4 + H * 2 * 16 * (yM // 128 + 1) * 4, True),
        },
    }


def per_sequence(parts: dict) -> float:
    return sum(b if shared else LAYERS * b for b, shared in parts.values())


def max_batch(parts: dict, cap: float) -> int:
    return int((cap - WEIGHTS) // per_sequence(parts))


def verify(parts: dict, B: int, cap: float) -> dict:
    """Allocate weights + B sequences on the GPU under a cap; then one more sequence must fail."""
    import torch

    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(min(1.0, cap / total))
    held = [torch.empty(int(WEIGHTS), dtype=torch.uint8, device="cuda")]

    def one_sequence():
        for b, shared in parts.values():
            for _ in range(1 if shared else LAYERS):
                held.append(torch.empty(int(b), dtype=torch.uint8, device="cuda"))

    out = dict(batch=B, fits=False, next_fails=False)
    try:
        for _ in range(B):
            one_sequence()
        out["fits"] = True
        out["allocated_gb"] = torch.cuda.memory_allocated() / 1e9
        try:
            one_sequence()
        except torch.OutOfMemoryError:
            out["next_fails"] = True
    except torch.OutOfMemoryError:
        pass
    finally:
        held.clear()
        torch.cuda.empty_cache()
        torch.cuda.set_per_process_memory_fraction(1.0)
    return out


def step_ms(steps: list, method: str, L: int, B: int) -> float | None:
    pts = sorted((r["B"], r["ms"]) for r in steps if r["method"] == method and r["L"] == L)
    if not pts:
        return None
    if len(pts) == 1:
        return pts[0][1] * B / pts[0][0]
    for (b0, t0), (b1, t1) in zip(pts, pts[1:]):
        if B <= b1 or (b1, t1) == pts[-1]:
            return t0 + (t1 - t0) * (B - b0) / (b1 - b0)
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--context", type=int, default=131072)
    ap.add_argument("--gen", type=int, default=1024)
    ap.add_argument("--cap-gb", type=float, default=80.0)
    ap.add_argument("--verify", action="store_true")
    ap.add_argument("--steps", default=os.path.join(os.path.dirname(__file__), "results", "decode_step.json"))
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    ap.add_argument("--tag", default="", help="output file suffix, e.g. h100: capacity_h100.json and .rows.csv")
    args = ap.parse_args()
    if args.tag and not args.tag.replace("_", "").isalnum():
        raise SystemExit(f"--tag {args.tag!r}: letters, digits and underscores only")
    if not os.path.exists(args.steps):
        raise SystemExit(f"--steps {args.steps}: no such step benchmark file (bench_decode_step.py writes one)")
    name = f"capacity_{args.tag}" if args.tag else "capacity"
    cap, L = args.cap_gb * 1e9, args.context
    lay = layouts(L, args.gen)
    step_file = json.load(open(args.steps))
    steps = step_file.get("steps", [])
    hbm = float(step_file.get("hbm", HBM))
    rows = []
    for method, parts in lay.items():
        per_tok = sum(b for b, shared in parts.values() if not shared) / (L + args.gen)
        B = max_batch(parts, cap)
        r = dict(method=method, context=L, gen=args.gen, bytes_per_token_layer=per_tok,
                 gb_per_sequence=per_sequence(parts) / 1e9, max_batch=B,
                 parts={k: v[0] * (1 if v[1] else LAYERS) / 1e9 for k, v in parts.items()})
        for variant in ([method] if method == "full" else [method, method + "_nocache"] if method == "shadowkv" else
                        ["yakv_fp8", "yakv_fp8_nocache", "yakv_h4", "yakv_h4_nocache"]):
            t = step_ms(steps, variant, L, B)
            if t is not None:
                step = LAYERS * t / 1e3 + WEIGHTS / hbm
                r[f"tokens_per_s[{variant}]"] = B / step
        if args.verify:
            r["verify"] = verify(parts, B, cap)
        rows.append(r)
    full_b = rows[0]["max_batch"]
    for r in rows:
        r["batch_vs_full"] = r["max_batch"] / max(full_b, 1)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, f"{name}.json"), "w") as f:
        json.dump(rows, f, indent=1)
    if args.verify:
        import torch

        device = torch.cuda.get_device_name()
    else:  # analytic; the tokens/s estimates are the step benchmark's device's
        device = step_file.get("device", "analytic")
    write_bench_rows(capacity_rows(rows, stamp("bench_capacity", device)), os.path.join(args.out, f"{name}.rows.csv"))
    print(f"context {L} + {args.gen} generated, cap {args.cap_gb:g} GB, weights {WEIGHTS / 1e9:g} GB")
    print(f"{'method':10s} {'B/tok/layer':>11s} {'GB/seq':>7s} {'max B':>6s} {'x full':>7s}  verified  tokens/s (estimate)")
    for r in rows:
        v = r.get("verify")
        vs = "-" if v is None else ("yes" if v["fits"] and v["next_fails"] else f"NO {v}")
        tps = "  ".join(f"{k[13:-1]}={v:.0f}" for k, v in r.items() if k.startswith("tokens_per_s"))
        print(f"{r['method']:10s} {r['bytes_per_token_layer']:11.1f} {r['gb_per_sequence']:7.2f} {r['max_batch']:6d} "
              f"{r['batch_vs_full']:7.2f}  {vs:8s}  {tps}")


if __name__ == "__main__":
    main()
