"""The study at scale on one GPU: the reproduction grid (shadowkv_lab.study) in parts of at most ~10 minutes of GPU
time each, into one resumable results store (docs/reproduction.md).

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

from shadowkv_lab.study import MODEL, PARTS, SKIP_OVER_CONTEXT, methods_of  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("parts", nargs="*", help=f"parts to run, in order; allowed: {', '.join(PARTS)}")
    ap.add_argument("--list", action="store_true", help="print the parts and exit")
    ap.add_argument("--data-dir", default="data/reproduction")
    ap.add_argument("--out", default="outputs/results/reproduction", help="the results store (resumable)")
    ap.add_argument("--model", default=MODEL)
    ap.add_argument("--batch-size", type=int, default=None, help="rows per wave (upper bound); default: the part's")
    ap.add_argument("--refill", action=argparse.BooleanOptionalAction, default=True, help="queued rows replace "
                    "finished ones once half of a call's rows have stopped (runner.run refill; the default)")
    ap.add_argument("--dry-run", action="store_true")
    a = ap.parse_args(argv)
    if a.list or not a.parts:
        for name, p in PARTS.items():
            ms = methods_of(name)
            print(f"{name:16} {p.task:22} {p.data:20} n={p.n or 'all'} methods={len(ms)} batch={p.batch_size}: "
                  f"{', '.join(c.name for c in ms)}")
        return 0
    bad = [p for p in a.parts if p not in PARTS]
    if bad:
        raise SystemExit(f"unknown part(s) {bad}; allowed: {', '.join(PARTS)}")
    from shadowkv_lab import runner
    from shadowkv_lab.runner_cli import load

    model, tok = load(a.model, None, None)
    failed = []
    for part in a.parts:
        task, n, bs = PARTS[part].task, PARTS[part].n, PARTS[part].batch_size
        path = Path(a.data_dir) / PARTS[part].data
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
