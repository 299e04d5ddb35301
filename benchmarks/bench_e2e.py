"""End-to-end decode tokens/s of a real model (default: the 0.5B Qwen2.5-Coder) with shadowkv_lab.generation.

    python benchmarks/bench_e2e.py --model PATH [--context 16384] [--new 64] [--batches 1 8] [--kernels]

One exact prefill of a filler-text prompt of `context` tokens, shared by every method and batch row; then greedy
decode of `new` tokens (stop tokens ignored, so every row decodes exactly `new`) for B caches at once through
`generation.decode`, the stacked step (cache.batched.BatchPlan). --kernels runs its Triton backend (backend="triton",
the CUDA default, with CUDA graphs); without it the torch backend runs (backend="torch"). Every run also reports the
step-to-step selection overlap (the cache-hit rate a resident step buffer would get), measured on the real query
stream: counted on the device inside the step (a sort of each row's selection per layer), so a CUDA graph replays it.
Runs on CPU too (slowly; use a short --context there): that is how the hit rates in benchmarks/README.md were taken.
Writes results/e2e_<device>_<context>[_kernels].json and the same numbers as benchmark rows (.rows.csv) beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from to_rows import e2e_rows, stamp  # noqa: E402
from shadowkv_lab.cache.batched import SparseGroup  # noqa: E402
from shadowkv_lab.cache.presets import get_preset  # noqa: E402
from shadowkv_lab.generation import build_cache, decode, prefill  # noqa: E402
from shadowkv_lab.models import load_model  # noqa: E402
from shadowkv_lab.results import BENCH_SUFFIX, write_bench_rows  # noqa: E402
from shadowkv_lab.tasks.filler import Filler  # noqa: E402

HITS: dict[str, torch.Tensor] = {}  # device counters of the current run: "hit", "sel"


def install_hooks():
    """Wrap the stacked step's selection: per layer, row and KV head, count the selected positions that the row had
    selected at its previous step too. Device ops only (no host sync), so a captured CUDA graph replays the count."""
    orig = SparseGroup.select

    def select(self, qg):
        pos = orig(self, qg)  # (B, H, K); entries past a row's selection length are padding
        K = pos.shape[2]
        if K == 0 or not HITS:
            return pos
        if not hasattr(self, "hit_seen"):  # rows of this stack that have a previous selection
            self.hit_seen = torch.zeros_like(self.state.active)
        valid = self.sel_valid[:, None, :K]  # (B, 1, K)
        prev = self.last_pos[:, :, :K].masked_fill(~valid, -1).sort(-1).values
        j = torch.searchsorted(prev, pos).clamp_(max=K - 1)
        counted = valid & (self.hit_seen & self.state.active)[:, None, None]
        HITS["hit"] += ((torch.gather(prev, 2, j) == pos) & counted).sum()
        HITS["sel"] += counted.expand_as(pos).sum()
        self.hit_seen |= self.state.active
        return pos

    SparseGroup.select = select


def filler_prompt(tokenizer, n_tokens: int) -> torch.Tensor:
    """Chat-templated prompt of exactly n_tokens: filler prose, then a request to summarise it."""
    f = Filler(random.Random(0))
    paras, ids = [], []
    while len(ids) < n_tokens:
        paras.extend(f.paragraph() for _ in range(max(8, (n_tokens - len(ids)) // 80)))
        text = "\n\n".join(paras) + "\n\nList every group of people mentioned above, with what they did."
        msgs = [{"role": "user", "content": text}]
        ids = tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True)
        ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
    return torch.tensor(ids[:8] + ids[len(ids) - (n_tokens - 8):], dtype=torch.long)  # keep the head and the question


def run(model, state, cfg, B, new, device, backend):
    caches = [build_cache(model, state, cfg) for _ in range(B)]
    first = int(state.first_logits.argmax())
    HITS.update(hit=torch.zeros((), dtype=torch.long, device=device), sel=torch.zeros((), dtype=torch.long, device=device))
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    outs = decode(model, caches, [first] * B, new, set(), backend=backend)
    if device.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    gpu_gb = sum(r[3] for c in caches for r in c.memory_report().rows if r[2] == "device") / 1e9
    hit, sel = int(HITS["hit"]), int(HITS["sel"])
    return dict(method=cfg.name, B=B, new=new, decode_s=dt, tokens_per_s=B * (new - 1) / dt,
                hit_rate=hit / sel if sel else None, cache_gpu_gb=gpu_gb,
                tokens=outs[0].token_ids[:16])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, help="local Hugging Face folder (the GPU machine has no network)")
    ap.add_argument("--context", type=int, default=16384)
    ap.add_argument("--new", type=int, default=64)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--methods", nargs="+", default=["full", "shadowkv", "yakv"])
    ap.add_argument("--kernels", action="store_true", help="decode on the step's Triton backend (CUDA)")
    ap.add_argument("--dtype", default="bf16")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = ap.parse_args()
    install_hooks()
    backend = "triton" if args.kernels else "torch"
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, tok = load_model(args.model, device=str(device), dtype=args.dtype)
    ids = filler_prompt(tok, args.context)
    t0 = time.perf_counter()
    state = prefill(model, ids)
    print(f"prefill {ids.numel()} tokens: {time.perf_counter() - t0:.2f}s", flush=True)
    rows = []
    for name in args.methods:
        cfg = get_preset(name)
        run(model, state, cfg, 1, 3, device, backend)  # warm-up (kernel compilation, allocator)
        for B in args.batches:
            r = run(model, state, cfg, B, args.new, device, backend)
            r.update(context=ids.numel(), kernels=args.kernels, device=str(device))
            rows.append(r)
            print(f"{name:9s} B={B:2d} {r['tokens_per_s']:8.1f} tok/s  decode {r['decode_s']:.2f}s  hit "
                  f"{r['hit_rate'] if r['hit_rate'] is None else round(r['hit_rate'], 3)}  cache {r['cache_gpu_gb']:.2f} GB",
                  flush=True)
    os.makedirs(args.out, exist_ok=True)
    tag = f"e2e_{device.type}_{ids.numel()}{'_kernels' if args.kernels else ''}.json"
    with open(os.path.join(args.out, tag), "w") as f:
        json.dump(rows, f, indent=1)
    dev_name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    write_bench_rows(e2e_rows(rows, stamp("bench_e2e", dev_name), model=os.path.basename(str(args.model).rstrip("/"))),
                     os.path.join(args.out, tag.removesuffix(".json") + BENCH_SUFFIX))
    print(f"\n{'method':9s} {'B':>3s} {'tok/s':>8s} {'hit':>6s}")
    for r in rows:
        print(f"{r['method']:9s} {r['B']:3d} {r['tokens_per_s']:8.1f} {r['hit_rate'] or 0:6.3f}")


if __name__ == "__main__":
    main()
