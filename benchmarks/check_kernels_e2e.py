"""Greedy tokens of the decode step's Triton backend vs its torch backend on a real prompt (CUDA).

    python benchmarks/check_kernels_e2e.py --model qwen2.5-coder-1.5b --tokens 8192 --methods shadowkv,yakv,yakv_exactkv --seeds 7,8

Both backends share one exact prefill and decode one row (B = 1) through `generation.decode`, i.e. the production
step (cache.batched.BatchPlan) with backend="triton" (the CUDA default, CUDA graphs on) and backend="torch". Each
backend runs once untimed first (Triton compiles on first use). Prints, per method, whether the token ids are
identical, the first divergence with the torch backend's top-1/top-2 logit margin there (a near-tie flips on
rounding; a large margin means a real difference), the largest logit difference over the steps before it, and both
decode times; writes kernels_e2e.json and its benchmark rows, kernels_e2e.rows.csv. The row keys keep their names:
"kernels" is the Triton backend, "reference" the torch backend. (The step scores landmarks dequantized once, so the
HIGGS scoring tile, kernels.scoring.HIGGS_TILE, which earlier runs of this script set, plays no part.)
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

from shadowkv_lab import get_preset, load_model
from shadowkv_lab.analysis.invariance import first_divergence
from shadowkv_lab.generation import build_cache, decode, encode_prompt, prefill, stop_token_ids
from shadowkv_lab.results import write_bench_rows
from shadowkv_lab.tasks import get_task

sys.path.insert(0, str(Path(__file__).resolve().parent))
from to_rows import agreement_rows, stamp  # noqa: E402


def sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="qwen2.5-coder-1.5b")
    ap.add_argument("--tokens", type=int, default=8192)
    ap.add_argument("--methods", default="shadowkv,yakv,yakv_exactkv")
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--dtype", default="bf16")
    ap.add_argument("--seeds", default="7", help="comma-separated generator seeds: one Text2JSON prompt each")
    args = ap.parse_args(argv)
    model, tok = load_model(args.model, dtype=args.dtype)
    stops = stop_token_ids(model, tok)
    rows = []
    st = stamp("check_kernels_e2e", torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu")
    for seed in map(int, args.seeds.split(",")):
        sample = get_task("text2json").load(n=1, tokens=args.tokens, seed=seed, tokenizer=tok)[0]
        state = prefill(model, encode_prompt(tok, sample.prompt))
        rows += compare(model, state, stops, args, seed)
        del state
        out = Path(os.environ.get("OUT", "benchmarks/results"))
        out.mkdir(parents=True, exist_ok=True)
        (out / "kernels_e2e.json").write_text(json.dumps(  # after every prompt: a cut-off run keeps what it measured
            {"model": args.model, "dtype": args.dtype, "max_new_tokens": args.max_new_tokens, "rows": rows}, indent=2))
        write_bench_rows(agreement_rows({"model": args.model, "rows": rows}, st), out / "kernels_e2e.rows.csv")


def compare(model, state, stops, args, seed) -> list[dict]:
    rows = []
    for name in args.methods.split(","):
        out = {}
        for path, backend in (("kernels", "triton"), ("reference", "torch")):
            first_tok = int(state.first_logits.argmax())
            decode(model, [build_cache(model, state, get_preset(name))], [first_tok], 4, stops, backend=backend)  # warm-up
            cache = build_cache(model, state, get_preset(name))
            logits = []
            sync()
            t0 = time.perf_counter()
            res = decode(model, [cache], [first_tok], args.max_new_tokens, stops, backend=backend,
                         on_logits=lambda rows, lg: logits.append(lg[0].float()))[0]
            sync()
            out[path] = (res.token_ids, time.perf_counter() - t0, logits)
        a, b = out["kernels"][0], out["reference"][0]
        first = first_divergence(a, b)
        first = None if first < 0 else first
        ka, ra = out["kernels"][2], out["reference"][2]
        upto = len(ra) if first is None else min(first, len(ra), len(ka))  # logits[i] chose token i+1
        diffs = [float((x - y).abs().max()) for x, y in zip(ka[:upto], ra[:upto])]
        margin = None
        if first is not None and 0 < first <= len(ra):
            top2 = ra[first - 1].topk(2).values
            margin = float(top2[0] - top2[1])
        rows.append({"seed": seed, "prompt_tokens": state.prompt_len, "method": name, "identical": a == b, "first_divergence": first, "n_tokens": len(b),
                     "reference_margin_at_divergence": margin, "max_logit_diff_before": max(diffs) if diffs else None,
                     "median_logit_diff_before": sorted(diffs)[len(diffs) // 2] if diffs else None,
                     "kernels_s": out["kernels"][1], "reference_s": out["reference"][1]})
        print(rows[-1], flush=True)
    return rows


if __name__ == "__main__":
    main()
