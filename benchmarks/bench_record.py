"""What recording attention costs a batched decode step: the same rows decoded with and without the recorder.

    python benchmarks/bench_record.py                                   # tiny random llama on this CPU
    python benchmarks/bench_record.py --model qwen2.5-coder-1.5b --tokens 16384 --rows 42 --device cuda
    python benchmarks/bench_record.py --shape 28,12,2,128 --tokens 16384 --rows 42 --device cuda   # random weights

Rows are one method (default shadowkv_fullkeys, the attribution grid's exact-key cell) on `--prompts` random prompts
of about `--tokens` tokens, repeated to `--rows`. Each variant decodes `--steps` tokens (EOS ignored) after two
short calls that count the aten operations a step dispatches (and warm up); prints ms and operations per step for
both and the recorder's share, and writes JSON to --out (default benchmarks/results/record_<device>.json). Eager
operations are what bounds a GPU step whose tensors are small: each launches at least one kernel, some microseconds.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import platform
import sys
import time
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from shadowkv_lab.cache.presets import resolve
from shadowkv_lab.generation import _sync, build_cache, decode, prefill

sys.path.insert(0, str(Path(__file__).resolve().parent))
from to_rows import stamp  # noqa: E402


class OpCount(TorchDispatchMode):
    """Counts the aten operations dispatched inside it."""

    def __init__(self):
        super().__init__()
        self.n = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.n += 1
        return func(*args, **(kwargs or {}))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="a model name or folder (default: a random model, --shape)")
    ap.add_argument("--shape", default=None, help="the random model's LAYERS,HEADS,KV_HEADS,HEAD_DIM (qwen2, bf16, "
                    "e.g. 28,12,2,128 for the 1.5B's attention); default a tiny llama in fp32")
    ap.add_argument("--tokens", type=int, default=520)
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--rows", type=int, default=32)
    ap.add_argument("--method", default="shadowkv_fullkeys")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--device", default=None)
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (torch.set_num_threads)")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    for name in ("tokens", "prompts", "rows", "steps", "threads"):
        if getattr(a, name) < 1:
            ap.error(f"--{name} {getattr(a, name)}: must be >= 1")
    torch.set_num_threads(a.threads)
    cfg = resolve(a.method)
    if a.model is None and a.shape is None:
        from shadowkv_lab.testing import tiny_model

        model, _ = tiny_model("llama", seed=7, device=a.device or "cpu")
        cfg = dataclasses.replace(cfg, local_budget=16, outlier_chunks=2, sparse_budget=0.1)  # sized for short prompts
        model_name = "tiny-llama"
    elif a.model is None:
        from shadowkv_lab.testing import tiny_model

        try:
            layers, heads, kv, hd = (int(x) for x in a.shape.split(","))
        except ValueError:
            ap.error(f"--shape {a.shape!r}: expected LAYERS,HEADS,KV_HEADS,HEAD_DIM, e.g. 28,12,2,128")
        model, _ = tiny_model("qwen2", seed=7, dtype=torch.bfloat16, device=a.device or "cpu", n_layers=layers,
                              n_heads=heads, n_kv_heads=kv, head_dim=hd, max_position_embeddings=4 * a.tokens)
        model_name = f"random-qwen2-{a.shape}"
    else:
        from shadowkv_lab import load_model

        model, _ = load_model(a.model, device=a.device)
        model_name = a.model
    device = next(model.parameters()).device
    vocab = model.config.vocab_size
    g = torch.Generator().manual_seed(8)
    states = [prefill(model, torch.randint(3, min(vocab, 384) if a.model is None else vocab, (a.tokens + 20 * i,),
                                           generator=g).to(device)) for i in range(a.prompts)]
    ms, ops = {}, {}

    def run(record: bool, steps: int, count: bool = False) -> tuple[float, int]:
        """One decode call of `steps` tokens after the first: (seconds, aten operations dispatched if count)."""
        caches = [build_cache(model, states[i % a.prompts], cfg, record=record) for i in range(a.rows)]
        firsts = [int(states[i % a.prompts].first_logits.argmax()) for i in range(a.rows)]
        counter = OpCount() if count else contextlib.nullcontext()
        _sync(device)
        t = time.perf_counter()
        with counter:
            decode(model, caches, firsts, steps + 1, stop_ids=set())
        _sync(device)
        return time.perf_counter() - t, counter.n if count else 0

    with torch.inference_mode():
        for record in (False, True):
            name = "recorded" if record else "unrecorded"
            # Operations a step: the difference of two counted calls (they warm up too). Run eagerly, each is at
            # least one kernel launch on a GPU, the bound of a step whose tensors are small.
            ops[name] = (run(record, 4, count=True)[1] - run(record, 2, count=True)[1]) / 2
            ms[name] = run(record, a.steps)[0] / a.steps * 1000
    ms["recorder"] = ms["recorded"] - ms["unrecorded"]
    ops["recorder"] = ops["recorded"] - ops["unrecorded"]
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    res = {"model": model_name, "method": cfg.name, "rows": a.rows, "tokens": a.tokens, "steps": a.steps,
           "device": str(device), "device_name": device_name, "threads": a.threads, "ms_per_step": ms,
           "ops_per_step": ops,
           **stamp("bench_record", device_name)}
    print(f"{model_name}, {a.rows} rows of {cfg.name} at ~{a.tokens} tokens on {res['device_name']}: "
          f"{ms['unrecorded']:.1f} ms a step unrecorded, {ms['recorded']:.1f} recorded "
          f"(the recorder {ms['recorder']:.1f} ms, {ms['recorder'] / a.rows:.2f} ms a row); operations a step: "
          f"{ops['unrecorded']:.0f} unrecorded, {ops['recorded']:.0f} recorded (the recorder {ops['recorder']:.0f})")
    out = Path(a.out or Path(__file__).resolve().parent / "results" / f"record_{device.type}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
