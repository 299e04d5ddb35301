"""Are the 1.5B's Text2JSON loops numerical? Re-run prompts that looped on the H200 (bf16) in another dtype on the CPU.

    python benchmarks/loop_dtype_cpu.py --dtype fp32 --tokens 16384 --setting m1_n6_x0_s0.5 --samples 4,6 \
        --compare results/h200 --out results/loop_fp32 --json benchmarks/results/text2json_loops_fp32_cpu.json

Full attention, greedy, the task's 1024-token cap, one sample at a time (about 10 minutes per looping 16k sample in
fp32 on 2 cores). --compare: a results store holding the same sample ids (the H200 search's), to report where the
two outputs first differ. Prints and writes one row per sample: score, new tokens, finish reason, how the output ends
(tasks.text2json_score.ending) and the first differing character.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_text2json import SETTINGS, samples_for  # noqa: E402

from shadowkv_lab import get_preset, load_model, run  # noqa: E402
from shadowkv_lab.results import load  # noqa: E402
from shadowkv_lab.tasks.text2json_score import ending  # noqa: E402


def first_difference(a: str, b: str) -> int | None:
    """Index of the first differing character (the shorter length if one is a prefix), None if equal."""
    k = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), None)
    return k if k is not None else (None if len(a) == len(b) else min(len(a), len(b)))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="qwen2.5-coder-1.5b")
    ap.add_argument("--dtype", default="fp32", choices=["bf16", "fp16", "fp32"])
    ap.add_argument("--tokens", type=int, default=16384)
    ap.add_argument("--setting", default="m1_n6_x0_s0.5", choices=sorted(SETTINGS), metavar="SETTING")
    ap.add_argument("--samples", default="4,6", help="comma-separated sample indices (seed 0) of the setting")
    ap.add_argument("--compare", default=None, help="results store with the same sample ids (e.g. the H200's)")
    ap.add_argument("--out", required=True, help="results store for this run (resumable)")
    ap.add_argument("--json", default=None, help="also write the rows here")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    try:
        idx = [int(x) for x in args.samples.split(",")]
    except ValueError:
        ap.error(f"--samples must be comma-separated integers, got {args.samples!r}")

    torch.set_num_threads(args.threads)
    model, tok = load_model(args.model, dtype=args.dtype, device="cpu")
    task, samples = samples_for(tok, args.tokens, 0, max(idx) + 1, 0, args.setting)
    samples = [samples[i] for i in idx]
    name = f"{args.model}-{args.dtype}-cpu"
    run(model, tok, [(task, samples)], [get_preset("full").replace(offload=False)], args.out, model_name=name,
        batch_size=1)
    df = load(args.out)
    df = df[(df["model"] == name) & df["sample_id"].isin([s.id for s in samples])]
    ref = load(args.compare).drop_duplicates("sample_id").set_index("sample_id") if args.compare else None
    rows = []
    for r in df.itertuples():
        row = dict(sample_id=r.sample_id, dtype=args.dtype, device="cpu", score=float(r.score), new_tokens=int(r.new_tokens),
                   finish_reason=r.finish_reason, ending=ending(r.prediction))
        if ref is not None and r.sample_id in ref.index:
            other = ref.loc[r.sample_id]
            row.update(ref_ending=ending(other["prediction"]), ref_dtype=str(other.get("dtype")),
                       ref_device=str(other.get("device_name")), first_difference=first_difference(r.prediction, other["prediction"]),
                       chars=len(r.prediction))
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"command": " ".join(sys.argv), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
