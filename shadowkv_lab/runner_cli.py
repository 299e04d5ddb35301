"""`python -m shadowkv_lab run`: the experiment grid from the command line (wired in by cli.py).

    python -m shadowkv_lab run --model qwen2.5-coder-0.5b --task text2json --n 16 --tokens 16384 \
        --methods full,shadowkv,yakv --out results/qwen05 [--dry-run]
    torchrun --nproc-per-node 8 -m shadowkv_lab run --num-samples 64 ...   # each rank takes every 8th sample
    python -m shadowkv_lab run --model tiny-qwen2 ...           # a tiny random model (tests, smoke runs)
"""

from __future__ import annotations

import argparse

from .testing import TINY_PREFIX


def _split(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def check_methods(names: list[str]) -> list[str]:
    """Fail before loading a model: every method name must resolve (cache.presets.resolve); all bad names at once."""
    from .cache.presets import PRESETS, resolve

    bad = []
    for m in names:
        try:
            resolve(m)
        except ValueError:
            bad.append(m)
    if bad or not names:
        raise ValueError(f"unknown method(s) {', '.join(bad) or '(none given)'}; known presets: {', '.join(PRESETS)}")
    return names


def check_tasks(names: list[str]) -> list[str]:
    """Fail before loading a model: every task name must resolve."""
    if not names:
        raise ValueError("no task given (--task T[,T2])")
    from .tasks import get_task

    for t in names:
        try:
            get_task(t)
        except KeyError as e:  # a registry that raises KeyError still gets a readable message
            raise ValueError(str(e.args[0]) if e.args else f"unknown task {t!r}") from None
    return names


def load(model: str, device: str | None, dtype: str | None):
    """(model, tokenizer) by models.load_model (offline names, hub ids, folders, "tiny-<arch>").
    Under torchrun the default device is cuda:LOCAL_RANK (when CUDA is available)."""
    import torch

    from .models import load_model
    from .runner import dist_env

    if device is None and torch.cuda.is_available():
        device = f"cuda:{dist_env()[2]}"

    return load_model(model, device=device, dtype=dtype)


def _cmd_run(args) -> int:
    from .runner import run

    if args.batch_size < 1:
        raise ValueError(f"--batch-size {args.batch_size}: must be >= 1")
    if args.max_new_tokens is not None and args.max_new_tokens < 1:
        raise ValueError(f"--max-new-tokens {args.max_new_tokens}: must be >= 1")
    methods = check_methods(_split(args.methods))
    tasks = check_tasks(_split(args.task))
    if args.dry_run and not args.model.startswith(TINY_PREFIX):  # the plan needs the tokenizer only
        from transformers import AutoConfig

        from .models import load_tokenizer, resolve
        from .runner import context_tokens

        model, tok = None, load_tokenizer(args.model)
        context = context_tokens(AutoConfig.from_pretrained(resolve(args.model)))
    else:
        model, tok = load(args.model, args.device, args.dtype)
        context = None  # the model's own config
    run(model, tok, tasks, methods, args.out, model_name=args.model, n=args.n, tokens=args.tokens, seed=args.seed,
        data=args.data, batch_size=args.batch_size, record=args.record, max_new_tokens=args.max_new_tokens,
        progress=not args.quiet, dry_run=args.dry_run, on_device=args.on_device, over_context=args.over_context,
        context=context, refill=args.refill, prefills=args.prefills, **({"rates": args.rates} if args.rates else {}))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("run", help="run a model x tasks x methods grid into a results store (resumable)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="offline name, hub id, local folder, or tiny-<arch> (random tiny model)")
    p.add_argument("--task", required=True, help="task name(s), comma-separated")
    p.add_argument("--methods", required=True, help="preset names, comma-separated (see `presets`)")
    p.add_argument("--out", required=True, help="results folder (created; reruns skip cells already in it)")
    # --num-samples: torchrun's own parser takes "--n" for an abbreviation of its --nnodes/--nproc-per-node
    p.add_argument("--n", "--num-samples", dest="n", type=int, default=None, help="samples per task (--num-samples under torchrun)")
    p.add_argument("--tokens", type=int, default=None, help="target prompt length for generated tasks")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", default=None, help="dataset file/folder passed to the task loader (default: generate offline)")
    p.add_argument("--batch-size", type=int, default=8, help="at most this many rows (sample x method) decoded together; "
                   "each wave takes as many as fit the device's free memory")
    p.add_argument("--refill", action=argparse.BooleanOptionalAction, default=True, help="queued rows take the places "
                   "of finished ones once half of a decode call's rows have stopped (the default: the same tokens, "
                   "1.8x the decode rate of the nine-method grid on an H100); --no-refill: each wave runs until its "
                   "last row stops")
    p.add_argument("--prefills", default=None, help="a folder of exact prefills shared between runs: a prompt "
                   "prefilled once is read back bit-identical (worth it on a CPU; on a GPU recomputing is faster)")
    p.add_argument("--max-new-tokens", type=int, default=None, help="override every task's cap")
    p.add_argument("--record", action="store_true", help="also store attention-level records (out/records/)")
    p.add_argument("--on-device", action="store_true", help="keep every method's cache on the compute device "
                   "(offload=False): same numbers, faster accuracy sweeps on a GPU")
    p.add_argument("--over-context", default="error", choices=["error", "skip"], help="samples whose prompt plus "
                   "cap exceed the model's context: fail naming them (default) or run the rest and list them")
    p.add_argument("--dry-run", action="store_true", help="print the grid, what is done and the cost; run nothing")
    p.add_argument("--rates", default=None, help="with --dry-run: the benchmarks/bench_runner.py JSON whose measured "
                   "prefill and decode rates give the GPU-time estimate (default: benchmarks/results/runner_h100.json, or "
                   "runner_h100_offloaded.json for a grid with values offloaded, once it is measured)")
    p.add_argument("--device", default=None, help="default: cuda:LOCAL_RANK if CUDA is available, else cpu")
    p.add_argument("--dtype", default=None, choices=["bf16", "fp16", "fp32"], help="default: bf16 (tiny models: fp32)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(func=_cmd_run)
