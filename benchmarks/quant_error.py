"""Relative MSE and bits/dim of every landmark/key/value format, on Gaussian data and on real keys of a model.

    python benchmarks/quant_error.py --model qwen2.5-coder-0.5b --tokens 2048

Real data: post-RoPE keys of a Text2JSON prompt (chunk-1 landmarks are exactly these keys), every layer and KV head,
quantized per head row (group = head_dim) for landmark formats and per token row (group = H*d) for the KV formats.
Relative MSE = ||x - qdq(x)||^2 / ||x||^2. Writes benchmarks/results/quant_error.json, its benchmark
rows (quant_error.rows.csv), and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from shadowkv_lab import load_model
from shadowkv_lab.generation import encode_prompt, prefill
from shadowkv_lab.quant import make_quantizer
from shadowkv_lab.results import BENCH_SUFFIX, write_bench_rows
from shadowkv_lab.tasks import get_task

sys.path.insert(0, str(Path(__file__).resolve().parent))
from to_rows import quant_rows, stamp  # noqa: E402

LANDMARK_FORMATS = ["bf16", "fp8", "nvfp4", "higgs-2-256", "higgs-2-64", "higgs-4-256", "higgs-8-256",
                    "residual:m=2,main=higgs-4-256,res=higgs-16-256"]
KV_FORMATS = ["fp8", "nvfp4", "higgs-2-256", "higgs-4-256"]


def rel_mse(q, x: torch.Tensor) -> float:
    x = x.float()
    return float(((q.qdq(x) - x) ** 2).sum() / (x ** 2).sum())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="qwen2.5-coder-0.5b")
    ap.add_argument("--tokens", type=int, default=2048)
    ap.add_argument("--out", default="benchmarks/results/quant_error.json")
    args = ap.parse_args(argv)
    model, tok = load_model(args.model, device="cpu", dtype="bf16")
    sample = get_task("text2json").load(n=1, tokens=args.tokens, seed=3, tokenizer=tok)[0]
    state = prefill(model, encode_prompt(tok, sample.prompt))
    H, L, d = state.k_post[0].shape
    keys_rows = torch.cat([k.reshape(H * L, d) for k in state.k_post])  # per-head rows: landmark layout
    kv_rows = torch.cat([k.transpose(0, 1).reshape(L, H * d) for k in state.k_pre] +
                        [v.transpose(0, 1).reshape(L, H * d) for v in state.v])  # token rows: YAKV's KV layout
    g = torch.Generator().manual_seed(0)
    gauss_d = torch.randn(8192, d, generator=g)
    gauss_hd = torch.randn(4096, H * d, generator=g)
    rows = []
    for fmt in LANDMARK_FORMATS:
        q = make_quantizer(fmt, group=d)
        rows.append({"use": "landmark", "format": fmt, "group": d, "bits_per_dim": q.bits_per_element(d),
                     "rel_mse_gaussian": rel_mse(q, gauss_d), "rel_mse_real": rel_mse(q, keys_rows)})
    for fmt in KV_FORMATS:
        q = make_quantizer(fmt, group=H * d)
        rows.append({"use": "keys+values", "format": fmt, "group": H * d, "bits_per_dim": q.bits_per_element(H * d),
                     "rel_mse_gaussian": rel_mse(q, gauss_hd), "rel_mse_real": rel_mse(q, kv_rows)})
    print(f"model {args.model}, prompt {state.prompt_len} tokens, {len(state.k_post)} layers x {H} KV heads x d {d}")
    print("| use | format | group | bits/dim (incl. scales) | rel. MSE Gaussian | rel. MSE real |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['use']} | {r['format']} | {r['group']} | {r['bits_per_dim']:.4g} | {r['rel_mse_gaussian']:.3g} | {r['rel_mse_real']:.3g} |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    data = {"model": args.model, "prompt_tokens": state.prompt_len, "rows": rows}
    Path(args.out).write_text(json.dumps(data, indent=2))
    write_bench_rows(quant_rows(data, stamp("quant_error", "cpu")), Path(args.out).with_name(Path(args.out).stem + BENCH_SUFFIX))


if __name__ == "__main__":
    main()
