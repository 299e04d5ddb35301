"""Where a stacked decode step spends its time: a method grid on real prompts, timed and under the torch profiler.

    python benchmarks/profile_step.py --model qwen2.5-coder-1.5b --data t2j.jsonl --n 8 \
        --methods full,oracle,shadowkv,yakv --steps 24 --on-device          # H200

Prefills --n samples of --data once, builds one cache per sample x method (offload=False with --on-device) and
stacks every row in one decode plan (no stop tokens, so the batch is constant). Times apart: the stacking, the first
step (on CUDA with the kernels: eager, then captured in a graph), --steps replayed steps (tokens/s, ms per step) and
--profile-steps more under torch.profiler; then, in a second plan without graphs, --eager-steps steps with every
layer's attention step of each method timed (device synchronised around it), the rest being the model's own layers.
Prints the ops that take the most device and host time and the bytes bound of one step (weights + every row's KV
read once, at the HBM copy rate), and writes benchmarks/results/profile_step_<device>.json and its benchmark rows
(.rows.csv).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shadowkv_lab import generation  # noqa: E402
from shadowkv_lab.cache.batched import BatchPlan  # noqa: E402
from shadowkv_lab.cache.presets import resolve  # noqa: E402
from shadowkv_lab.models import load_model  # noqa: E402
from shadowkv_lab.provenance import provenance  # noqa: E402
from shadowkv_lab.results import write_bench_rows  # noqa: E402
from shadowkv_lab.tasks import get_task  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from to_rows import profile_rows, stamp  # noqa: E402

HBM_GBPS = 4268.0  # H200 device-to-device copy, read + write counted (docs/gpu.md)


def _sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


class _Timer:
    """with t: ... -> t.ms, wall time with the device synchronised at both ends."""

    def __init__(self, device):
        self.device, self.ms = device, 0.0

    def __enter__(self):
        _sync()
        self.t0 = time.perf_counter()

    def __exit__(self, *exc):
        _sync()
        self.ms = 1000 * (time.perf_counter() - self.t0)


class _Driver:
    """Greedy steps of every stacked row through plan.forward (no stop tokens: the batch stays the same)."""

    def __init__(self, model, plan, firsts, caches, device):
        self.model, self.plan, self.device = model, plan, device
        self.ids = torch.tensor([[firsts[r]] for r in plan.batch_rows], device=device)
        self.pos = torch.tensor([[caches[r].position] for r in plan.batch_rows], device=device)

    def step(self) -> None:
        with generation._invariant_linears(self.model, self.device):
            logits = self.plan.forward(self.model, self.ids, self.pos)
        self.ids = logits.argmax(-1, keepdim=True)
        self.plan.advance()
        self.pos = self.pos + 1


class _GroupTimes:
    """Wall time of every layer-group step of an eager plan, summed per method (device synchronised around each)."""

    def __init__(self):
        self.ms, self.rows = {}, {}

    def wrap(self, name: str, fn):
        def timed(*args, **kw):
            _sync()
            t0 = time.perf_counter()
            out = fn(*args, **kw)
            _sync()
            self.ms[name] = self.ms.get(name, 0.0) + 1000 * (time.perf_counter() - t0)
            return out
        return timed

    def reset(self) -> None:
        self.ms = dict.fromkeys(self.ms, 0.0)

    def table(self, steps: int) -> list[dict]:
        return [{"method": m, "rows": self.rows[m], "group_ms": v / steps} for m, v in self.ms.items()]


def _time_groups(plan) -> _GroupTimes:
    times = _GroupTimes()
    for g in plan.groups:
        name = g.caches[0].config.name
        times.rows[name] = times.rows.get(name, 0) + len(g.rows)
        for lg in g.layers:
            lg.step = times.wrap(name, lg.step)
    return times


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="qwen2.5-coder-1.5b")
    ap.add_argument("--task", default="text2json")
    ap.add_argument("--data", required=True)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--methods", default="full,oracle,shadowkv,shadowkv_fullkeys,shadowkv_oracle,shadowkv_scaled,yakv,"
                                         "yakv_residual,yakv_exactkv")
    ap.add_argument("--steps", type=int, default=24)
    ap.add_argument("--profile-steps", type=int, default=6)
    ap.add_argument("--eager-steps", type=int, default=3, help="eager steps timed per method (no graph)")
    ap.add_argument("--on-device", action="store_true")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    a = ap.parse_args(argv)
    for name in ("steps", "profile_steps", "eager_steps"):
        if getattr(a, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} {getattr(a, name)}: must be >= 1")
    model, tok = load_model(a.model)
    dev = next(model.parameters()).device
    samples = get_task(a.task).read_records(a.data, n=a.n)
    cfgs = [resolve(m) for m in a.methods.split(",")]
    if a.on_device:
        cfgs = [c.replace(offload=False) for c in cfgs]
    caches, firsts = [], []
    t0 = time.perf_counter()
    for s in samples:
        st = generation.prefill(model, generation.encode_prompt(tok, s.prompt))
        for c in cfgs:
            caches.append(generation.build_cache(model, st, c))
            firsts.append(int(st.first_logits.argmax()))
        del st
    _sync()
    build_s = time.perf_counter() - t0
    rows = len(caches)
    kv_bytes = sum(c.memory_report().device_bytes for c in caches)
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())

    # One BatchPlan for the whole measurement: stacking, the first step (eager, then captured on CUDA with the
    # kernels) and the replayed steps are timed apart; a decode call pays the first two once per stack.
    t = _Timer(dev)
    plan = BatchPlan(caches, a.steps + a.profile_steps + 4)
    with t:
        plan.set_active(list(range(rows)))
    setup_ms = t.ms
    drive = _Driver(model, plan, firsts, caches, dev)
    with t:
        drive.step()
    capture_ms = t.ms
    drive.step()  # the first replay (CUDA graph launch paths warm)
    with t:
        for _ in range(a.steps):
            drive.step()
    step_ms = t.ms / a.steps
    bound_ms = 1000 * (weight_bytes + kv_bytes) / (HBM_GBPS / 2 * 1e9)  # read only: half the copy rate's bytes
    print(f"{rows} rows ({len(samples)} samples x {len(cfgs)} methods), build {build_s:.1f} s; stacking {setup_ms:.0f} ms, "
          f"first step {'+ graph capture ' if plan.graphs else ''}{capture_ms:.0f} ms; step {step_ms:.1f} ms "
          f"({'replayed' if plan._graph is not None else 'eager'}), {rows * 1000 / step_ms:.0f} tok/s; bound {bound_ms:.2f} ms "
          f"(weights {weight_bytes / 1e9:.2f} GB + device KV {kv_bytes / 1e9:.2f} GB)")

    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=acts) as prof:
        for _ in range(a.profile_steps):
            drive.step()
    plan.close()
    key = "self_cuda_time_total" if torch.cuda.is_available() else "self_cpu_time_total"
    ev = prof.key_averages()
    print(ev.table(sort_by=key, row_limit=25, max_name_column_width=60))
    print(ev.table(sort_by="self_cpu_time_total", row_limit=15, max_name_column_width=60))
    attr = "self_device_time_total" if torch.cuda.is_available() else "self_cpu_time_total"
    top = sorted(ev, key=lambda e: -getattr(e, attr, 0.0))[:40]

    # Per method: each layer's attention step of each stack timed in eager steps (no graph), the rest is the model.
    eager = BatchPlan(caches, a.eager_steps + 2, graphs=False)
    eager.set_active(list(range(rows)))
    per_method = _time_groups(eager)
    drive = _Driver(model, eager, firsts, caches, dev)
    drive.step()  # warm
    per_method.reset()
    with t:
        for _ in range(a.eager_steps):
            drive.step()
    eager.close()
    eager_step_ms = t.ms / a.eager_steps
    groups = per_method.table(a.eager_steps)
    print(f"eager step {eager_step_ms:.1f} ms; per method (attention steps of every layer, ms per step):")
    for g in groups:
        print(f"  {g['method']:<28}{g['rows']:>5} rows {g['group_ms']:>9.2f} ms")
    print(f"  {'(the rest of the model)':<28}{'':>10} {eager_step_ms - sum(g['group_ms'] for g in groups):>9.2f} ms")
    res = {
        "model": a.model, "task": a.task, "rows": rows, "samples": len(samples), "methods": a.methods.split(","),
        "on_device": a.on_device, "steps": a.steps, "step_ms": step_ms, "tok_s": rows * 1000 / step_ms,
        "graphs": plan.graphs, "setup_ms": setup_ms, "capture_ms": capture_ms, "eager_step_ms": eager_step_ms,
        "groups": groups,
        "bound_ms": bound_ms, "weight_bytes": weight_bytes, "device_kv_bytes": kv_bytes,
        "ops": [{"name": e.key, "count": e.count, "self_device_us": getattr(e, "self_device_time_total", 0.0),
                 "self_cpu_us": e.self_cpu_time_total} for e in top],
        **provenance(model),
    }
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"profile_step_{dev.type}.json"
    path.write_text(json.dumps(res, indent=1, default=str))
    st = stamp("profile_step", res["device_name"], commit=res["git_commit"] or "", timestamp=res["timestamp"])
    rows = write_bench_rows(profile_rows(res, st), out / f"profile_step_{dev.type}.rows.csv")
    print("wrote", path, "and", rows)


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
