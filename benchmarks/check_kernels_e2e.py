"""Greedy tokens of the Triton decode path vs the torch reference path on a real prompt (CUDA).

    python benchmarks/check_kernels_e2e.py --model qwen2.5-coder-1.5b --tokens 8192 --methods shadowkv,yakv,yakv_exactkv

Both paths share one exact prefill; SHADOWKV_LAB_KERNELS=1 selects the kernels, 0 the reference. Prints, per method, whether the
token ids are identical, the first divergence, and both decode times; writes benchmarks/results/kernels_e2e.json.
"""

import argparse
import json
import os
import time
from pathlib import Path

import torch

from shadowkv_lab import get_preset, load_model
from shadowkv_lab.generation import build_cache, decode, encode_prompt, prefill, stop_token_ids
from shadowkv_lab.tasks import get_task


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="qwen2.5-coder-1.5b")
    ap.add_argument("--tokens", type=int, default=8192)
    ap.add_argument("--methods", default="shadowkv,yakv,yakv_exactkv")
    ap.add_argument("--max-new-tokens", type=int, default=128)
    args = ap.parse_args(argv)
    model, tok = load_model(args.model, dtype="bf16")
    sample = get_task("text2json").load(n=1, tokens=args.tokens, seed=7, tokenizer=tok)[0]
    state = prefill(model, encode_prompt(tok, sample.prompt))
    stops = stop_token_ids(model, tok)
    rows = []
    for name in args.methods.split(","):
        out = {}
        for path, flag in (("kernels", "1"), ("reference", "0")):
            os.environ["SHADOWKV_LAB_KERNELS"] = flag
            cache = build_cache(model, state, get_preset(name))
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            res = decode(model, [cache], [int(state.first_logits.argmax())], args.max_new_tokens, stops)[0]
            torch.cuda.synchronize()
            out[path] = (res.token_ids, time.perf_counter() - t0)
        a, b = out["kernels"][0], out["reference"][0]
        first = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), None if len(a) == len(b) else min(len(a), len(b)))
        rows.append({"method": name, "identical": a == b, "first_divergence": first, "n_tokens": len(b),
                     "kernels_s": out["kernels"][1], "reference_s": out["reference"][1]})
        print(rows[-1], flush=True)
    os.environ.pop("SHADOWKV_LAB_KERNELS")
    Path("benchmarks/results").mkdir(parents=True, exist_ok=True)
    Path(os.environ.get("OUT", "benchmarks/results"), "kernels_e2e.json").write_text(json.dumps(
        {"model": args.model, "prompt_tokens": state.prompt_len, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
