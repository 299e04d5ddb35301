"""How the benchmarks time one call: CUDA events around it on a GPU (the GPU's own clock, no host round trip in the
measurement), the wall clock on a CPU."""

from __future__ import annotations

import time

import torch


def call_ms(fn, cuda: bool) -> float:
    """Milliseconds one call of fn takes."""
    if not cuda:
        t0 = time.perf_counter()
        fn()
        return (time.perf_counter() - t0) * 1e3
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    a.record()
    fn()
    b.record()
    b.synchronize()
    return a.elapsed_time(b)
