"""Kernel launches of one decode step, per layer and method group, counted on this CPU (the Triton interpreter).

    TRITON_INTERPRET=1 python benchmarks/count_launches.py                      # the experiment grid's nine methods
    TRITON_INTERPRET=1 python benchmarks/count_launches.py --methods shadowkv,yakv --rows 8

A replayed CUDA-graph step of a wide grid is bound by its kernels, not by the bytes they move: on an H100 the nine
methods' 72-row step ran about 8,600 kernels of under 5 us. Each method's group launches a fixed number of kernels a
layer whatever its rows, so that number, times layers and groups, is what fewer, larger kernels must cut. It is
counted here without a GPU: every aten operation that computes (views, allocations and the interpreter's own copies
left out) and every Triton launch of `BatchPlan.decode_layer` on the `triton` backend, for `--rows` rows of one
method on a tiny random qwen2 (bf16; budgets sized for its short prompts); `per step` counts what runs once a step
for the group (`BatchPlan.advance`). On a GPU some aten operations launch more than one kernel (a top-k, a sort), so
the counts are a floor. Writes JSON to --out (default benchmarks/results/launches_cpu.json).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TRITON_INTERPRET", "1")

import torch  # noqa: E402
import triton.runtime.interpreter as interpreter  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

from shadowkv_lab.cache.batched import BatchPlan  # noqa: E402
from shadowkv_lab.cache.presets import resolve  # noqa: E402
from shadowkv_lab.generation import build_cache, prefill  # noqa: E402
from shadowkv_lab.testing import tiny_model  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from to_rows import stamp  # noqa: E402

GRID = "full,oracle,shadowkv,shadowkv_fullkeys,shadowkv_oracle,shadowkv_scaled,yakv,yakv_residual,yakv_exactkv"
# Operations that launch no kernel on a GPU: views, allocations, metadata.
NO_KERNEL = {"view", "_unsafe_view", "slice", "select", "reshape", "unsqueeze", "squeeze", "expand", "flatten",
             "as_strided", "t", "transpose", "permute", "alias", "narrow", "split", "unbind", "detach", "detach_",
             "lift_fresh", "empty", "empty_like", "empty_strided", "new_empty", "set_", "is_pinned"}


class LaunchCount(TorchDispatchMode):
    """Counts, by name, the computing aten operations dispatched outside Triton kernels and the Triton launches."""

    def __init__(self):
        super().__init__()
        self.aten, self.triton, self._in_kernel = collections.Counter(), collections.Counter(), False
        self._run = interpreter.GridExecutor.__call__

    def __enter__(self):
        count = self

        def launch(executor, *args, **kwargs):
            count.triton[getattr(executor.fn, "__name__", "kernel")] += 1
            count._in_kernel = True  # the interpreter's copies of the kernel's arguments are not the step's
            try:
                return count._run(executor, *args, **kwargs)
            finally:
                count._in_kernel = False

        interpreter.GridExecutor.__call__ = launch
        return super().__enter__()

    def __exit__(self, *exc):
        interpreter.GridExecutor.__call__ = self._run
        return super().__exit__(*exc)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if not self._in_kernel and name not in NO_KERNEL:
            self.aten[name] += 1
        return func(*args, **(kwargs or {}))


def small(cfg):
    """The method sized for the tiny model's ~1.3k-token prompts (the counts do not depend on sizes)."""
    if cfg.kind == "full":
        return cfg
    cfg = dataclasses.replace(cfg, local_budget=16, sparse_budget=48, outlier_chunks=min(cfg.outlier_chunks, 3))
    return dataclasses.replace(cfg, rank=8) if cfg.rank > 8 else cfg


def count_method(model, states, name: str) -> dict:
    caches = [build_cache(model, st, small(resolve(name))) for st in states]
    plan = BatchPlan(caches, 8, backend="triton", graphs=False)
    plan.set_active(list(range(len(caches))))
    c = model.config
    B, L, d = len(caches), c.num_hidden_layers, c.head_dim
    g = torch.Generator().manual_seed(1)
    q = torch.randn(B, c.num_attention_heads, d, generator=g).to(torch.bfloat16)
    k = torch.randn(B, c.num_key_value_heads, d, generator=g).to(torch.bfloat16)
    v = torch.randn(B, c.num_key_value_heads, d, generator=g).to(torch.bfloat16)
    for warm in (True, False):  # the first step compiles and builds lazily what later steps reuse
        layer, step = LaunchCount(), LaunchCount()
        with layer:
            for i in range(L):
                plan.decode_layer(i, q, k, k, v)
        with step:
            plan.advance()
    groups = [type(gr.layers[0]).__name__ for gr in plan.groups]
    plan.close()
    return {"groups": groups,
            "aten_per_layer": sum(layer.aten.values()) / L, "triton_per_layer": sum(layer.triton.values()) / L,
            "per_layer": (sum(layer.aten.values()) + sum(layer.triton.values())) / L,
            "per_step": sum(step.aten.values()) + sum(step.triton.values()),
            "aten": {n: v / L for n, v in layer.aten.most_common()},
            "triton": {n: v / L for n, v in layer.triton.most_common()}}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", default=GRID)
    ap.add_argument("--rows", type=int, default=4)
    ap.add_argument("--layers", type=int, default=28, help="layers of the step the total is scaled to (the 1.5B's 28)")
    ap.add_argument("--out", default="benchmarks/results/launches_cpu.json")
    a = ap.parse_args(argv)
    if a.rows < 1 or a.layers < 1:
        ap.error(f"--rows {a.rows} and --layers {a.layers} must be >= 1")
    if os.environ["TRITON_INTERPRET"] != "1":
        ap.error("counts run on the Triton interpreter: TRITON_INTERPRET=1")
    methods = [m.strip() for m in a.methods.split(",") if m.strip()]
    for m in methods:  # every name checked before the model is built
        try:
            resolve(m)
        except ValueError as e:
            ap.error(f"--methods: {e}")
    model, _ = tiny_model("qwen2", seed=3, dtype=torch.bfloat16, device="cpu", head_dim=32)
    g = torch.Generator().manual_seed(4)
    with torch.inference_mode():
        states = [prefill(model, torch.randint(3, 384, (1200 + 50 * i,), generator=g)) for i in range(a.rows)]
        res = {m: count_method(model, states, m) for m in methods}
    total = sum(r["per_layer"] for r in res.values()) * a.layers + sum(r["per_step"] for r in res.values())
    print(f"{'method':20s} {'aten/layer':>10s} {'triton/layer':>12s} {'per step':>8s}")
    for m, r in res.items():
        print(f"{m:20s} {r['aten_per_layer']:10.1f} {r['triton_per_layer']:12.1f} {r['per_step']:8d}")
    print(f"one step of the {len(methods)} groups at {a.layers} layers: {total:,.0f} launches (attention only)")
    out = {**stamp("count_launches", "cpu (Triton interpreter)"), "rows": a.rows, "layers": a.layers,
           "step_launches": total, "methods": res}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
