"""Per-step decode time of each method through our cache (any device), e.g. the 0.5B default at 4k on CPU.

    python benchmarks/bench_cache_step.py --model qwen2.5-coder-0.5b --tokens 4096 --methods full,shadowkv,yakv

One exact prefill is shared; each method decodes `--steps` tokens (EOS ignored) after `--warmup` steps. Prints a
table (median ms/step, tokens/s, ratio to `full`) and writes JSON to benchmarks/results/cache_step_<device>.json and
the same numbers as benchmark rows to cache_step_<device>.rows.csv beside it.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from shadowkv_lab import get_preset, load_model
from shadowkv_lab.generation import build_cache, decode, prefill
from shadowkv_lab.results import BENCH_SUFFIX, write_bench_rows

sys.path.insert(0, str(Path(__file__).resolve().parent))
from to_rows import cache_step_rows, stamp  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="qwen2.5-coder-0.5b")
    ap.add_argument("--tokens", type=int, default=4096)
    ap.add_argument("--methods", default="full,shadowkv,shadowkv_scaled,yakv")
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--device", default=None)
    ap.add_argument("--dtype", default="bf16")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)

    model, tok = load_model(args.model, device=args.device, dtype=args.dtype)
    dev = next(model.parameters()).device
    g = torch.Generator().manual_seed(0)
    vocab = model.config.vocab_size  # random text (timing does not depend on content) inside any model's vocabulary
    ids = torch.randint(min(100, vocab // 2), min(20000, vocab), (args.tokens,), generator=g)
    state = prefill(model, ids)
    print(f"prefill {args.tokens} tokens: {state.prefill_s:.2f}s ({args.tokens / state.prefill_s:.0f} tok/s) on {dev}")
    rows = []
    for name in args.methods.split(","):
        cfg = get_preset(name)
        cache = build_cache(model, state, cfg)
        stamps = []

        def tick(rows_, logits):
            if dev.type == "cuda":
                torch.cuda.synchronize()
            stamps.append(time.perf_counter())

        t0 = time.perf_counter()
        decode(model, [cache], [int(state.first_logits.argmax())], args.steps + args.warmup + 1, stop_ids=set(), on_logits=tick)
        steps = [b - a for a, b in zip([t0] + stamps[:-1], stamps)][args.warmup:]
        ms = 1000 * statistics.median(steps)
        mem = cache.memory_report()
        rows.append({"method": name, "ms_per_step": ms, "tokens_per_s": 1000 / ms,
                     "device_B_per_token_layer": mem.per_token_per_layer("device"),
                     "offloaded_B_per_token_layer": mem.per_token_per_layer("offloaded")})
    base = next((r["ms_per_step"] for r in rows if r["method"] == "full"), None)
    print(f"{'method':<18}{'ms/step':>10}{'tok/s':>9}{'x full':>8}{'dev B/tok/layer':>17}{'off B/tok/layer':>17}")
    for r in rows:
        r["ratio_to_full"] = r["ms_per_step"] / base if base else None
        print(f"{r['method']:<18}{r['ms_per_step']:>10.1f}{r['tokens_per_s']:>9.2f}{(r['ratio_to_full'] or float('nan')):>8.2f}"
              f"{r['device_B_per_token_layer']:>17.1f}{r['offloaded_B_per_token_layer']:>17.1f}")
    out = Path(args.out or f"benchmarks/results/cache_step_{dev.type}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"model": args.model, "tokens": args.tokens, "steps": args.steps, "device": str(dev), "dtype": args.dtype,
            "torch": torch.__version__, "host": platform.node(), "threads": torch.get_num_threads()}
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    dev_name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else str(dev)
    path = write_bench_rows(cache_step_rows({"meta": meta, "rows": rows}, stamp("bench_cache_step", dev_name)),
                            out.with_name(out.name.removesuffix(".json") + BENCH_SUFFIX))
    print(f"wrote {out} and {path}")


if __name__ == "__main__":
    main()
