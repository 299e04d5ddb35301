"""Text2JSON at real scale on a GPU: difficulty calibration (full attention) and the method comparison.

    python benchmarks/gpu_text2json.py --phase calibrate --model qwen2.5-coder-1.5b --out results/gpu
    python benchmarks/gpu_text2json.py --phase compare  --model qwen2.5-coder-1.5b --out results/gpu --gold-per-1k 1.5

calibrate: `full` on n samples at each length x gold density (gold entities per 1k prompt tokens); the task is
informative when full attention lands between 40 and 90.
compare: the study's methods on the same samples at the chosen density.
Accuracy runs keep every tensor on the GPU (offload=False): placement changes speed, never the numbers.
Rows go to the results store under --out (resumable); a summary table is printed last.
"""

from __future__ import annotations

import argparse

import torch

from shadowkv_lab import get_preset, load_model, run
from shadowkv_lab.tasks import get_task

COMPARE = "full,shadowkv,shadowkv_scaled,shadowkv_fullkeys,shadowkv_oracle,oracle,yakv,yakv_residual"


def samples_for(tok, tokens: int, gold_per_1k: float, n: int, seed: int):
    task = get_task("text2json")
    samples = task.load(n=n, tokens=tokens, seed=seed, tokenizer=tok, gold_per_1k_tokens=gold_per_1k)
    for i, s in enumerate(samples):  # ids that name the difficulty, so cells never collide across settings
        s.id = f"t{tokens}_g{gold_per_1k:g}_s{seed}_{i}"
        s.meta["gold_per_1k"] = gold_per_1k
    return task, samples


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--phase", choices=["calibrate", "compare"], required=True)
    ap.add_argument("--model", default="qwen2.5-coder-1.5b")
    ap.add_argument("--out", required=True)
    ap.add_argument("--tokens", default="8192,16384")
    ap.add_argument("--gold-per-1k", default="0.75,2.0", help="calibrate: densities to try; compare: the chosen one")
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--methods", default=COMPARE)
    ap.add_argument("--batch-size", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    model, tok = load_model(args.model, dtype="bf16")
    name = args.model.rstrip("/").split("/")[-1]
    methods = ["full"] if args.phase == "calibrate" else args.methods.split(",")
    cfgs = [get_preset(m).replace(offload=False) for m in methods]
    tasks = []
    for tokens in map(int, args.tokens.split(",")):
        for g in map(float, args.gold_per_1k.split(",")):
            task, samples = samples_for(tok, tokens, g, args.n, args.seed)
            tasks.append((task, samples))
    df = None
    for task, samples in tasks:  # one grid per setting keeps waves homogeneous in length
        df = run(model, tok, [(task, samples)], cfgs, args.out, model_name=name, batch_size=args.batch_size)
    from shadowkv_lab.results import load

    df = load(args.out)
    df["tokens"] = df["sample_id"].str.extract(r"^t(\d+)_")[0].astype(int)
    df["gold_per_1k"] = df["sample_id"].str.extract(r"_g([\d.]+)_")[0].astype(float)
    tab = df.groupby(["tokens", "gold_per_1k", "method"]).agg(
        score=("score", "mean"), lenient=("metric_score_lenient", "mean"), n=("score", "size"),
        prompt_tokens=("prompt_tokens", "mean"), new_tokens=("new_tokens", "mean"),
        truncated=("finish_reason", lambda s: int((s == "length").sum())), decode_tok_s=("decode_tok_s", "mean"),
    ).round(2)
    print(tab.to_string())
    print(f"device: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu'}")


if __name__ == "__main__":
    main()
