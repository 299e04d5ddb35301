"""The study at scale on one GPU: the reproduction grid in parts of at most ~10 minutes of GPU time each, into one
resumable results store (docs/reproduction.md).

    python benchmarks/reproduce.py --list                                  # parts, cells, data files
    python benchmarks/reproduce.py t2j16_main --data-dir DATA --out STORE  # one part (resumes: stored cells skipped)
    python benchmarks/reproduce.py t2j16_main --dry-run ...                # what it would run, with a GPU-time estimate

Data files come from `python -m shadowkv_lab data` (commands in docs/reproduction.md); every part runs the 1.5B
default in bf16, greedy, each task's own cap, values offloaded to pinned host memory (the paper's setting). A part
interrupted by its time limit loses at most its wave in flight: run it again to finish it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shadowkv_lab.cache.presets import (  # noqa: E402
    SHADOWKV_BUDGET, YAKV_BUDGET, chunk_size_ablation, landmark_precision, resolve, with_budget)

MODEL = "qwen2.5-coder-1.5b"

# Every task: full attention, the oracle bound at both budgets, ShadowKV at the four budget readings, the rank matched
# to H*d, the 2x2 attribution, YAKV as published, YAKV with centred keys (docs/key_offset.md) and with exact keys.
MAIN = ["full", "oracle", f"oracle@{2 * SHADOWKV_BUDGET:g}", "shadowkv", f"shadowkv@{2 * SHADOWKV_BUDGET:g}",
        "shadowkv@2048t", f"shadowkv@{10 * SHADOWKV_BUDGET:g}", "shadowkv_scaled", "shadowkv_fullkeys",
        "shadowkv_oracle", "yakv", "yakv_centred", "yakv_exactkv"]


def ablation_groups() -> dict[str, list]:
    """Text2JSON 16k only, by axis: chunk size (bf16 landmarks, exact keys), landmark precision at chunk 1 (residual
    landmarks among them), and budget sweeps for the accuracy-versus-memory frontier."""
    return {
        "chunk_size": [chunk_size_ablation(c) for c in (1, 2, 4, 8, 16)],
        "landmark_precision": [landmark_precision(p) for p in ("fp8", "nvfp4", "higgs4", "higgs3", "higgs2", "higgs1",
                                                                 "residual")],
        "budget": [with_budget(resolve("shadowkv"), SHADOWKV_BUDGET * k) for k in (0.5, 4)]
        + [with_budget(resolve("yakv_centred"), YAKV_BUDGET * k) for k in (0.25, 0.5, 2)],
    }


def ablations() -> list:
    """Every config of ablation_groups, in order."""
    return [c for group in ablation_groups().values() for c in group]


# part -> (task, data file, samples, methods, rows per wave)
PARTS = {
    "t2j16_main": ("text2json", "t2j_16k.jsonl", 48, MAIN, 256),
    "t2j16_ablation": ("text2json", "t2j_16k.jsonl", 48, None, 256),
    "mn16_main": ("multineedle", "mn_16k.jsonl", 40, MAIN, 256),
    "niah16_main": ("ruler_niah_single", "niah_16k.jsonl", 40, MAIN, 256),
    "niahmk16_main": ("ruler_niah_multikey", "niahmk_16k.jsonl", 40, MAIN, 256),
    "t2j8_main": ("text2json", "t2j_8k.jsonl", 48, MAIN, 320),
    "mn30_main": ("multineedle", "mn_30k.jsonl", 40, MAIN, 160),
    "longproc_main": ("longproc_html_to_tsv", "longproc_2k.jsonl", None, MAIN, 512),
}

# LongProc's 2k split has pages of up to ~81k tokens: the tasks whose prompt plus 2,048-token cap exceeds the 1.5B's
# 32,768-token context (48 of 189) are left out and listed; every other part must fit whole.
SKIP_OVER_CONTEXT = {"longproc_main"}


def methods_of(part: str) -> list:
    m = PARTS[part][3]
    return ablations() if m is None else [resolve(x) for x in m]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("parts", nargs="*", help=f"parts to run, in order; allowed: {', '.join(PARTS)}")
    ap.add_argument("--list", action="store_true", help="print the parts and exit")
    ap.add_argument("--data-dir", default="data/reproduction")
    ap.add_argument("--out", default="outputs/results/reproduction", help="the results store (resumable)")
    ap.add_argument("--model", default=MODEL)
    ap.add_argument("--batch-size", type=int, default=None, help="rows per wave (upper bound); default: the part's")
    ap.add_argument("--refill", action="store_true", help="queued rows replace finished ones once half of a call's "
                    "rows have stopped (runner.run refill)")
    ap.add_argument("--dry-run", action="store_true")
    a = ap.parse_args(argv)
    if a.list or not a.parts:
        for name, (task, data, n, _, bs) in PARTS.items():
            ms = methods_of(name)
            print(f"{name:16} {task:22} {data:20} n={n or 'all'} methods={len(ms)} batch={bs}: {', '.join(c.name for c in ms)}")
        return 0
    bad = [p for p in a.parts if p not in PARTS]
    if bad:
        raise SystemExit(f"unknown part(s) {bad}; allowed: {', '.join(PARTS)}")
    from shadowkv_lab import runner
    from shadowkv_lab.runner_cli import load

    model, tok = load(a.model, None, None)
    failed = []
    for part in a.parts:
        task, data, n, _, bs = PARTS[part]
        path = Path(a.data_dir) / data
        if not path.exists():
            raise SystemExit(f"{part}: data file {path} missing (docs/reproduction.md has the command that writes it)")
        print(f"[reproduce] {part}: {task} from {path}", flush=True)
        try:
            runner.run(model, tok, [task], methods_of(part), a.out, model_name=a.model, n=n, data=str(path),
                       batch_size=a.batch_size or bs, dry_run=a.dry_run, progress=True,
                       over_context="skip" if part in SKIP_OVER_CONTEXT else "error", refill=a.refill)
        except runner.CellsFailed as e:  # the part's other cells are stored; the next parts still run
            print(f"[reproduce] {part}: {e}", file=sys.stderr, flush=True)
            failed.append(part)
    if failed:
        raise SystemExit(f"cells failed in part(s) {failed} (named above; rerun the part to retry them)")
    return 0


if __name__ == "__main__":
    import torch

    torch.set_grad_enabled(False)
    sys.exit(main())
