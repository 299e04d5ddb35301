"""Where a stacked decode step spends its time: a method grid on real prompts, timed and under the torch profiler.

    python benchmarks/profile_step.py --model qwen2.5-coder-1.5b --data t2j.jsonl --n 8 \
        --methods full,oracle,shadowkv,yakv --steps 24 --on-device          # H200

Prefills --n samples of --data once, builds one cache per sample x method (offload=False with --on-device), then
decodes --steps tokens for every row together (no stop tokens, so the batch is constant): first timed without the
profiler (tokens/s, ms per step), then --profile-steps more under torch.profiler. Prints the ops that take the most
device and host time and the bytes bound of one step (weights + every row's KV read once, at the HBM copy rate),
and writes benchmarks/results/profile_step_<device>.json and its benchmark rows (.rows.csv).
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
    ap.add_argument("--on-device", action="store_true")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    a = ap.parse_args(argv)
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

    def run(steps, caches_, firsts_):
        _sync()
        t = time.perf_counter()
        outs = generation.decode(model, caches_, firsts_, steps, stop_ids=set())
        _sync()
        return time.perf_counter() - t, outs

    warm, outs = run(2, caches, firsts)  # compiles kernels, allocates stacks
    firsts = [o.token_ids[-1] for o in outs]
    dt, outs = run(a.steps, caches, firsts)
    firsts = [o.token_ids[-1] for o in outs]
    step_ms = 1000 * dt / (a.steps - 1)  # the first token of each call is the carried-in one
    bound_ms = 1000 * (weight_bytes + kv_bytes) / (HBM_GBPS / 2 * 1e9)  # read only: half the copy rate's bytes
    print(f"{rows} rows ({len(samples)} samples x {len(cfgs)} methods), build {build_s:.1f} s; "
          f"step {step_ms:.1f} ms, {rows * 1000 / step_ms:.0f} tok/s; bound {bound_ms:.2f} ms "
          f"(weights {weight_bytes / 1e9:.2f} GB + device KV {kv_bytes / 1e9:.2f} GB)")

    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=acts) as prof:
        run(a.profile_steps, caches, firsts)
    key = "self_cuda_time_total" if torch.cuda.is_available() else "self_cpu_time_total"
    ev = prof.key_averages()
    print(ev.table(sort_by=key, row_limit=25, max_name_column_width=60))
    print(ev.table(sort_by="self_cpu_time_total", row_limit=15, max_name_column_width=60))
    attr = "self_device_time_total" if torch.cuda.is_available() else "self_cpu_time_total"
    top = sorted(ev, key=lambda e: -getattr(e, attr, 0.0))[:40]
    res = {
        "model": a.model, "task": a.task, "rows": rows, "samples": len(samples), "methods": a.methods.split(","),
        "on_device": a.on_device, "steps": a.steps, "step_ms": step_ms, "tok_s": rows * 1000 / step_ms,
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
