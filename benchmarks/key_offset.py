"""Key offsets on real prompts: per-layer key statistics, attention error of each key format under each offset rule,
and the selection quality of HIGGS landmarks with and without the landmark offset.

    python benchmarks/key_offset.py --model qwen2.5-coder-0.5b --tokens 4096                      # CPU, minutes
    python benchmarks/key_offset.py --model qwen2.5-coder-1.5b --tokens 16384 --device cuda        # H200, seconds
    python benchmarks/key_offset.py ... --data path/to/samples.jsonl --task multineedle            # a task's file

Writes benchmarks/results/key_offset/<model>_<tokens>_<task>.csv (one row per layer x kind x format x rule) and
prints the per-rule summary (median and max over layers). Prompts: the first sample of --data, or a generated
calibrated Text2JSON sample (--seed).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shadowkv_lab import key_diagnostics as kd  # noqa: E402
from shadowkv_lab.generation import encode_prompt  # noqa: E402
from shadowkv_lab.models import load_model  # noqa: E402
from shadowkv_lab.provenance import provenance  # noqa: E402
from shadowkv_lab.tasks import get_task  # noqa: E402

KEY_FORMATS = {"higgs4": "higgs-2-256", "higgs2": "higgs-4-256", "fp8": "fp8", "nvfp4": "nvfp4"}
LANDMARK_FORMATS = {"bf16": "native", "higgs2": "higgs-4-256", "higgs1": "higgs-8-256"}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="qwen2.5-coder-0.5b")
    ap.add_argument("--tokens", type=int, default=4096)
    ap.add_argument("--task", default="text2json")
    ap.add_argument("--data", default=None, help="a task JSONL (first sample used); default: generate")
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--n-queries", type=int, default=64)
    ap.add_argument("--device", default=None)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "key_offset"))
    a = ap.parse_args(argv)
    model, tok = load_model(a.model, device=a.device, dtype="bf16")
    task = get_task(a.task)
    if a.data:
        sample = task.read_records(a.data, n=1)[0]
    else:
        kw = {"difficulty": "calibrated"} if a.task == "text2json" else {}
        sample = task.load(n=1, tokens=a.tokens, seed=a.seed, tokenizer=tok, **kw)[0]
    ids = encode_prompt(tok, sample.prompt)
    t0 = time.perf_counter()
    cap = kd.capture_prompt(model, tok, ids, a.n_queries)
    rows = [dict(r, kind="stats") for r in kd.key_statistics(model, tok, None, cap=cap)]
    rows += [dict(r, kind="key_attention") for r in kd.key_attention_error(model, tok, None, KEY_FORMATS, cap=cap)]
    rows += [dict(r, kind="landmark_selection") for r in kd.landmark_selection(model, tok, None, LANDMARK_FORMATS, cap=cap)]
    df = pd.DataFrame(rows).assign(model=a.model, prompt_tokens=int(ids.numel()), task=a.task, sample=sample.id,
                                   commit=provenance().get("commit", ""))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{a.model}_{a.tokens}_{a.task}.csv"
    df.to_csv(path, index=False)
    ka = df[df.kind == "key_attention"]
    print(f"{a.model}, {ids.numel()} tokens ({a.task} {sample.id}), {time.perf_counter() - t0:.0f} s -> {path}")
    print("key attention TV (median / max over layers; layer 0):")
    piv = ka.pivot_table(index="layer", columns=["format", "key_offset"], values="tv")
    summary = pd.DataFrame({"median": piv.median(), "max": piv.max(), "layer0": piv.loc[0]}).round(4)
    print(summary.to_string())
    ls = df[df.kind == "landmark_selection"]
    print("landmark selection (mean over layers; layer 0):")
    g = ls.groupby(["format", "centred"])
    print(pd.concat([g[["captured_mass", "oracle_recall"]].mean().round(4),
                     ls[ls.layer == 0].set_index(["format", "centred"])[["captured_mass"]].rename(
                         columns={"captured_mass": "layer0_mass"}).round(4)], axis=1).to_string())


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
