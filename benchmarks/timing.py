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


class PhaseClock:
    """Times the phases of one eager call: start(), then mark(name) at the end of each phase, then ms() -> {name: ms}.
    On a GPU each mark records a CUDA event on the current stream, so a phase is the device time between two marks
    (the host launching ahead is not counted unless the device waits for it); on a CPU, the wall clock."""

    def __init__(self, cuda: bool):
        self.cuda = cuda
        self.marks: list = []

    def _now(self):
        if not self.cuda:
            return time.perf_counter()
        e = torch.cuda.Event(enable_timing=True)
        e.record()
        return e

    def start(self) -> None:
        self.marks = [(None, self._now())]

    def mark(self, name: str) -> None:
        self.marks.append((name, self._now()))

    def ms(self) -> dict:
        if self.cuda:
            self.marks[-1][1].synchronize()
        out = {}
        for (_, a), (name, b) in zip(self.marks, self.marks[1:]):
            out[name] = out.get(name, 0.0) + (a.elapsed_time(b) if self.cuda else (b - a) * 1e3)
        return out
