"""`data` and `score` subcommands, added to the project's CLI by `register(subparsers)`.

    shadowkv-lab data text2json --n 100 --tokens 16384 --seed 0 --out data/t2j.jsonl --tokenizer Qwen/Qwen3-1.7B
    shadowkv-lab data multineedle --n 100 --tokens 131072 --source essays.jsonl --set needles=needles.jsonl --out mn.jsonl
    shadowkv-lab data longproc_html_to_tsv --source LongProc/data --set split=8k --out lp8k.jsonl
    shadowkv-lab score text2json --pred preds.jsonl --data data/t2j.jsonl --out scores.jsonl

Prediction rows are {"id", "prediction"}; a data sample without a prediction scores as an empty
output and is flagged `missing`. The mean printed excludes NaN (invalid gold) samples.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

from .base import aggregate
from .jsonl import read_jsonl, write_jsonl


def _parse_value(v: str):
    # --set values: JSON when it parses (numbers, booleans, lists), else the raw string (paths)
    try:
        return json.loads(v)
    except ValueError:
        return v


def _parse_sets(pairs: list[str] | None) -> dict:
    out = {}
    for p in pairs or []:
        if "=" not in p:
            raise SystemExit(f"--set expects KEY=VALUE, got {p!r}")
        k, v = p.split("=", 1)
        out[k.strip()] = _parse_value(v)
    return out


def _load_tokenizer(name_or_path: str | None):
    if not name_or_path:
        return None
    from shadowkv_lab.models import load_tokenizer  # lazy: pulls in transformers

    return load_tokenizer(name_or_path)


def cmd_data(args) -> int:
    from . import get_task

    task = get_task(args.task)
    kw = _parse_sets(args.set)
    tokenizer = _load_tokenizer(args.tokenizer)
    samples = task.load(args.source, n=args.n, tokens=args.tokens, seed=args.seed, tokenizer=tokenizer, **kw)
    n = write_jsonl(args.out, (task.to_record(s) for s in samples))
    lengths = [s.meta.get("n_tokens") for s in samples if isinstance(s.meta.get("n_tokens"), int)]
    unit = samples[0].meta.get("length_unit", "") if samples else ""
    span = f", lengths {min(lengths)}..{max(lengths)} {unit}" if lengths else ""
    print(f"wrote {n} {task.name} samples to {args.out}{span}")
    return 0


def _prediction_text(row: dict):
    for k in ("prediction", "pred", "output", "response"):
        if k in row:
            v = row[k]
            return v if isinstance(v, str) else ("" if v is None else json.dumps(v, ensure_ascii=False))
    return None


def cmd_score(args) -> int:
    from . import get_task

    task = get_task(args.task)
    samples = task.read_records(args.data)
    preds: dict[str, str] = {}
    for row in read_jsonl(args.pred):
        if "id" not in row:
            raise SystemExit(f"{args.pred}: a prediction row has no 'id'")
        text = _prediction_text(row)
        preds[str(row["id"])] = "" if text is None else text
    rows = []
    for s in samples:
        missing = s.id not in preds
        scores = task.score(preds.get(s.id, ""), s.gold)
        rows.append({"id": s.id, **scores, "missing": missing})
    unknown = set(preds) - {s.id for s in samples}
    summary = aggregate({k: v for k, v in r.items() if k not in ("id", "missing")} for r in rows)
    if args.out:
        write_jsonl(args.out, rows)
    n_missing = sum(r["missing"] for r in rows)
    main = summary.get(task.primary_metric, math.nan)
    extras = ", ".join(f"{k}={v:.2f}" for k, v in summary.items() if k not in ("n", "n_invalid", task.primary_metric))
    print(f"{task.name}: {task.primary_metric}={main:.2f} over {summary['n'] - summary['n_invalid']} samples"
          f" (invalid {summary['n_invalid']}, missing predictions {n_missing}, unknown ids {len(unknown)})"
          + (f"; {extras}" if extras else ""))
    return 0


def register(subparsers) -> None:
    """Add `data` and `score` to an argparse subparsers object; each sets func=."""
    from . import TASKS

    names = sorted(TASKS)
    p = subparsers.add_parser("data", help="generate or convert a task's dataset to JSONL",
                              description="Write a task's samples as JSONL (generated offline unless --source is given).")
    p.add_argument("task", choices=names)
    p.add_argument("--n", type=int, default=None, help="number of samples (default: 100 generated / all loaded)")
    p.add_argument("--tokens", type=int, default=None, help="target prompt length in tokens")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output JSONL (.gz compresses)")
    p.add_argument("--tokenizer", default=None, help="model name or path whose tokenizer measures lengths")
    p.add_argument("--source", default=None,
                   help="official/user data or haystack: file, folder or hub id (default: generate offline)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="extra loader/generator option, repeatable (e.g. n_gold=20, spread=0.3, split=8k; Text2JSON: "
                        "difficulty=spec|easy|calibrated)")
    p.set_defaults(func=cmd_data)

    s = subparsers.add_parser("score", help="score predictions against a task's dataset",
                              description="Score {id, prediction} rows; print the mean and write per-sample scores.")
    s.add_argument("task", choices=names)
    s.add_argument("--pred", required=True, help="predictions JSONL with id and prediction")
    s.add_argument("--data", required=True, help="the dataset JSONL written by `data`")
    s.add_argument("--out", default=None, help="per-sample scores JSONL")
    s.set_defaults(func=cmd_score)


def main(argv=None) -> int:
    """Standalone entry point (python -m shadowkv_lab.tasks.cli ...)."""
    parser = argparse.ArgumentParser(prog="shadowkv_lab.tasks")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
