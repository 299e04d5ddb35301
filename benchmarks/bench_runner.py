"""Runner vs naive loop on the same grid: wall time, prefills, decode tokens/s, and an identical-results check.

    python benchmarks/bench_runner.py                                   # 8 methods x 16 Text2JSON samples at 16k, 0.5B, CUDA
    python benchmarks/bench_runner.py --model tiny-qwen2 --n 2 --tokens 1500 --methods full,yakv --max-new-tokens 8   # CPU smoke

The naive loop is what one writes first: `generate` once per method per sample (a prefill each time, batch 1).
The runner prefills each sample once and decodes up to --batch-size (sample x method) rows per forward pass.
Writes benchmarks/results/runner_<device>.json and its benchmark rows, runner_<device>.rows.csv.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from shadowkv_lab import generation, get_preset, runner  # noqa: E402
from shadowkv_lab.provenance import provenance  # noqa: E402
from shadowkv_lab.results import BENCH_SUFFIX, write_bench_rows  # noqa: E402
from shadowkv_lab.runner_cli import check_methods, load  # noqa: E402
from shadowkv_lab.tasks import get_task  # noqa: E402
from to_rows import runner_rows, stamp  # noqa: E402

DEFAULT_METHODS = "full,shadowkv,shadowkv_fullkeys,shadowkv_oracle,oracle,yakv,yakv_residual,yakv_exactkv"


class Meter:
    """Wraps prefill/decode to count prefills and decode-step tokens and time them (both paths use the same functions)."""

    def __init__(self):
        self.prefills = self.prefill_tokens = self.decode_tokens = self.decode_steps = self.decode_calls = 0
        self.prefill_s = self.decode_s = 0.0

    def prefill(self, real):
        def f(model, ids, **kw):
            st = real(model, ids, **kw)
            self.prefills += 1
            self.prefill_tokens += int(ids.shape[0])
            self.prefill_s += st.prefill_s
            return st
        return f

    def decode(self, real):
        def f(model, caches, firsts, caps, stop_ids, **kw):
            inner = kw.get("progress")

            def step(n_active):  # one call per decode step (generation.decode's progress)
                self.decode_steps += 1
                if inner is not None:
                    inner(n_active)

            kw["progress"] = step
            self.decode_calls += 1
            t0 = time.perf_counter()
            outs = real(model, caches, firsts, caps, stop_ids, **kw)
            self.decode_s += time.perf_counter() - t0
            # tokens this call made: a new row's first comes from the prefill, a resumed row's earlier ones were counted
            had = [len(t) if isinstance(t, list) else 1 for t in firsts]
            self.decode_tokens += sum(len(o.token_ids) - n for o, n in zip(outs, had))
            return outs
        return f

    def report(self, wall: float, cells: int) -> dict:
        return {"wall_s": wall, "cells": cells, "prefills": self.prefills, "prefill_tokens": self.prefill_tokens,
                "prefill_s": self.prefill_s, "decode_tokens": self.decode_tokens, "decode_s": self.decode_s,
                "decode_tok_s": self.decode_tokens / self.decode_s if self.decode_s else float("nan"),
                # what sets the rate: steps, how many rows each one advanced, and what a step cost (the decode calls'
                # time over their steps, so stacking and graph captures are in it)
                "decode_steps": self.decode_steps, "decode_calls": self.decode_calls,
                "live_rows_mean": self.decode_tokens / self.decode_steps if self.decode_steps else float("nan"),
                "step_ms": 1e3 * self.decode_s / self.decode_steps if self.decode_steps else float("nan"),
                "cells_per_s": cells / wall if wall else float("nan")}


def patched(meter: Meter, module):
    """Route `module.prefill` / `module.decode` through the meter for the duration of a with-block."""
    class _Ctx:
        def __enter__(self):
            self.saved = module.prefill, module.decode
            module.prefill, module.decode = meter.prefill(module.prefill), meter.decode(module.decode)

        def __exit__(self, *exc):
            module.prefill, module.decode = self.saved
    return _Ctx()


def bench_runner(model, tok, task, samples, methods, args):
    meter = Meter()
    if args.per_row:  # the runner with the per-row reference decode step instead of the stacked one
        import functools

        saved = runner.decode
        runner.decode = functools.partial(generation.decode, batched=False)
    try:
        return _bench_runner(meter, model, tok, task, samples, methods, args)
    finally:
        if args.per_row:
            runner.decode = saved


def _bench_runner(meter, model, tok, task, samples, methods, args):
    with tempfile.TemporaryDirectory() as out, patched(meter, runner):
        t0 = time.perf_counter()
        df = runner.run(model, tok, [(task, samples)], methods, out, model_name=args.model, batch_size=args.batch_size,
                        max_new_tokens=args.max_new_tokens, progress=not args.quiet, on_device=args.on_device,
                        refill=args.refill)
        wall = time.perf_counter() - t0
    cells = {(r.sample_id, r.method): (json.loads(r.token_ids), r.score) for r in df.itertuples()}
    return meter.report(wall, len(df)), cells


def bench_naive(model, tok, task, samples, methods, args):
    """One `generate` per cell, sample-major; with --naive-cells K only the first K cells (each cell is independent, so
    the naive wall time is linear in cells: the report scales it to the whole grid and says so)."""
    meter = Meter()
    cells = {}
    todo = [(s, m) for s in samples for m in methods]
    limit = args.naive_cells or len(todo)
    with patched(meter, generation):
        t0 = time.perf_counter()
        for s, m in todo[:limit]:
            cap = args.max_new_tokens or task.max_new_tokens_for(s)
            cfg = get_preset(m).replace(offload=False) if args.on_device else m
            res = generation.generate(model, tok, s.prompt, cfg, max_new_tokens=cap)
            cells[(str(s.id), m)] = (res.token_ids, task.score(res.text, s.gold).get(task.primary_metric))
            print(f"naive {len(cells)}/{limit} {m}: {res.new_tokens} tokens, {time.perf_counter() - t0:.1f}s", file=sys.stderr, flush=True)
        wall = time.perf_counter() - t0
    rep = meter.report(wall, len(cells))
    rep["measured_cells"], rep["grid_cells"] = len(cells), len(todo)
    rep["wall_s_grid_estimate"] = wall * len(todo) / len(cells)
    return rep, cells


def random_model(folder: str, device: str | None, dtype: str | None):
    """(model, tokenizer): the architecture of folder/config.json, randomly initialised on the device (seed 0)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from shadowkv_lab.models import load_tokenizer

    if not (Path(folder) / "config.json").is_file():
        raise SystemExit(f"--random-weights: {folder!r} has no config.json (give a model folder)")
    dt = {"fp16": torch.float16, "fp32": torch.float32}.get(dtype, torch.bfloat16)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder), dtype=dt, attn_implementation="sdpa")
    return model.eval(), load_tokenizer(folder)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="qwen2.5-coder-0.5b", help="offline name, hub id, folder, or tiny-<arch>")
    p.add_argument("--task", default="text2json")
    p.add_argument("--n", type=int, default=16)
    p.add_argument("--tokens", type=int, default=16384)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", default=None, help="samples file (python -m shadowkv_lab data ...); default: the task's generator")
    p.add_argument("--methods", default=DEFAULT_METHODS)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=256, help="cap per cell (0: the task's own cap, 1024 for Text2JSON)")
    p.add_argument("--device", default=None)
    p.add_argument("--dtype", default=None, choices=["bf16", "fp16", "fp32"])
    p.add_argument("--shape", default=None, help="tiny-<arch> only: LAYERS,HEADS,KV_HEADS,HEAD_DIM of the random model, e.g. "
                   "24,14,2,64 (the 0.5B's attention shape) to time a real-size model where its weights are not available")
    p.add_argument("--random-weights", action="store_true", help="--model is a folder whose config.json and tokenizer "
                   "define the model; its weights are random (bf16 unless --dtype): the speed and batch invariance of the "
                   "real architecture where its weights are not available; scores are meaningless, rows run to their caps")
    p.add_argument("--skip-naive", action="store_true", help="time the runner only")
    p.add_argument("--on-device", action="store_true", help="both loops keep caches on the compute device (offload=False)")
    p.add_argument("--refill", action=argparse.BooleanOptionalAction, default=True, help="the runner refills a decode "
                   "call with queued rows once half of its rows have stopped (runner.run refill; --no-refill: waves)")
    p.add_argument("--per-row", action="store_true", help="the runner decodes with the per-row reference step "
                   "(generation.decode(batched=False)) instead of the stacked one")
    p.add_argument("--naive-cells", type=int, default=0, help="run the naive loop on the first K cells only and scale its "
                   "wall time to the grid (0: every cell)")
    p.add_argument("--out-json", default=None, help="default: benchmarks/results/runner_<device>.json")
    p.add_argument("-q", "--quiet", action="store_true")
    args = p.parse_args(argv)
    if args.naive_cells < 0:
        raise SystemExit(f"--naive-cells {args.naive_cells}: must be >= 0 (0: every cell)")
    args.max_new_tokens = args.max_new_tokens or None
    methods = check_methods([m for m in args.methods.split(",") if m])

    if args.shape:
        if not args.model.startswith("tiny-"):
            raise SystemExit("--shape applies to tiny-<arch> random models only")
        from shadowkv_lab.testing import tiny_model

        nl, nh, nkv, hd = (int(x) for x in args.shape.split(","))
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.dtype, torch.float32)
        device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        model, tok = tiny_model(args.model[len("tiny-"):], dtype=dtype, device=device, n_layers=nl, n_heads=nh, n_kv_heads=nkv, head_dim=hd)
        args.model = f"{args.model}[{args.shape}]"
    elif args.random_weights:
        model, tok = random_model(args.model, args.device, args.dtype)
        args.model = f"{Path(args.model).name} (random weights)"
    else:
        model, tok = load(args.model, args.device, args.dtype)
    task = get_task(args.task)
    samples = task.load(args.data, n=args.n, tokens=args.tokens, seed=args.seed, tokenizer=tok)
    # Warm-up outside the timings (CUDA context, kernels, allocator, quantizer grids), every method once.
    short = min(samples, key=lambda s: len(s.prompt))
    for m in methods:
        generation.generate(model, tok, short.prompt, m, max_new_tokens=2)

    res_runner, cells_runner = bench_runner(model, tok, task, samples, methods, args)
    prov = provenance(model)
    dev = "cpu" if prov["device_name"] == "cpu" else re.sub(r"[^a-z0-9]+", "-", prov["device_name"].lower()).strip("-")
    out = Path(args.out_json) if args.out_json else Path(__file__).parent / "results" / f"runner_{dev}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    # the batched rate first: a naive loop cut short by a time limit leaves it on disk
    out.write_text(json.dumps({"args": vars(args), "runner": res_runner, "naive": "not run yet"}, indent=2, default=str))
    res_naive, cells_naive = (None, {}) if args.skip_naive else bench_naive(model, tok, task, samples, methods, args)

    result = {"args": vars(args), "provenance": prov, "prompt_tokens_mean": res_runner["prefill_tokens"] / max(res_runner["prefills"], 1),
              "runner": res_runner, "naive": res_naive}
    rows = [("runner", res_runner)] + ([("naive", res_naive)] if res_naive else [])
    print(f"\n{args.model} on {prov['device_name']} ({prov['dtype']}): {len(samples)} {task.name} samples x {len(methods)} methods, "
          f"~{result['prompt_tokens_mean']:.0f} prompt tokens, <= {args.max_new_tokens or 'task cap'} new tokens, batch {args.batch_size}")
    print(f"{'mode':<8}{'wall s':>10}{'prefills':>10}{'prefill s':>11}{'dec tokens':>12}{'decode s':>10}{'dec tok/s':>11}"
          f"{'cells/s':>9}{'steps':>8}{'rows/step':>10}{'ms/step':>9}")
    for name, r in rows:
        print(f"{name:<8}{r['wall_s']:>10.2f}{r['prefills']:>10}{r['prefill_s']:>11.2f}{r['decode_tokens']:>12}"
              f"{r['decode_s']:>10.2f}{r['decode_tok_s']:>11.1f}{r['cells_per_s']:>9.3f}{r['decode_steps']:>8}"
              f"{r['live_rows_mean']:>10.1f}{r['step_ms']:>9.1f}")
    if res_naive:
        same_tok = [k for k in cells_naive if cells_runner.get(k, (None,))[0] == cells_naive[k][0]]
        same_score = [k for k in cells_naive if k in cells_runner and cells_runner[k][1] == cells_naive[k][1]]
        result.update(speedup=res_naive["wall_s_grid_estimate"] / res_runner["wall_s"], identical_tokens=len(same_tok) == len(cells_naive),
                      identical_scores=len(same_score) == len(cells_naive),
                      mismatched_cells=sorted(f"{s}/{m}" for s, m in set(cells_naive) - set(same_tok)))
        if res_naive["measured_cells"] < res_naive["grid_cells"]:
            print(f"naive loop measured on {res_naive['measured_cells']}/{res_naive['grid_cells']} cells; grid estimate "
                  f"{res_naive['wall_s_grid_estimate']:.1f} s (linear in cells)")
        print(f"speedup {result['speedup']:.2f}x; identical token ids {len(same_tok)}/{len(cells_naive)} cells, "
              f"identical scores {len(same_score)}/{len(cells_naive)}")
        if result["mismatched_cells"]:
            print("token mismatches (batched GEMMs may round differently from batch 1 on GPU):", ", ".join(result["mismatched_cells"][:20]))
    out.write_text(json.dumps(result, indent=2, default=str))
    rows = out.with_name(out.name.removesuffix(".json") + BENCH_SUFFIX)
    st = stamp("bench_runner", prov["device_name"], commit=prov["git_commit"] or "", timestamp=prov["timestamp"])
    write_bench_rows(runner_rows(json.loads(out.read_text()), st), rows)
    print(f"wrote {out} and {rows}")
    return 0 if not res_naive or result["identical_scores"] else 1


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    sys.exit(main())
