"""Page-locked host memory for the offloaded row stores, on the host's base pages or on 2 MiB huge pages.

The decode step reads the selected rows of a store zero-copy: the GPU dereferences host addresses over PCIe, one
request per row slice, so every request needs its page translated. `pages="default"` is torch's pinned allocator
(cudaHostAlloc, base pages: 4 KiB). `pages="huge"` maps anonymous memory, asks the kernel for transparent huge pages
(madvise MADV_HUGEPAGE) on a 2 MiB-aligned range, touches it and page-locks it with cudaHostRegister; the mapping is
unlocked and unmapped when the last tensor over it is freed. Whether huge pages shorten the reads is measured by
`benchmarks/bench_zero_copy.py`, not assumed.
"""

from __future__ import annotations

import math
import mmap
import os

import torch

HOST_PAGES = ("default", "huge")
HUGE_PAGE = 2 << 20


def host_pages() -> str:
    """The page kind for new offloaded stores: SHADOWKV_LAB_HOST_PAGES, default "default"."""
    v = os.environ.get("SHADOWKV_LAB_HOST_PAGES", "default")
    if v not in HOST_PAGES:
        raise ValueError(f"SHADOWKV_LAB_HOST_PAGES={v!r}: allowed {HOST_PAGES}")
    return v


class _LockedMapping(mmap.mmap):
    """An anonymous mapping that cudaHostRegister page-locked; unlocked when it is collected (the tensors over it
    hold it through the buffer protocol, so that is after the last of them)."""

    locked_at = 0

    def __del__(self):
        if self.locked_at:
            torch.cuda.synchronize()  # a kernel in flight may still read it
            torch.cuda.cudart().cudaHostUnregister(self.locked_at)
            self.locked_at = 0


def _huge_locked(nbytes: int, lock: bool) -> torch.Tensor:
    mm = _LockedMapping(-1, nbytes + HUGE_PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS,
                        prot=mmap.PROT_READ | mmap.PROT_WRITE)
    mm.madvise(mmap.MADV_HUGEPAGE)  # raises on a kernel without transparent huge pages: no silent fallback
    base = torch.frombuffer(mm, dtype=torch.uint8, count=1).data_ptr()
    t = torch.frombuffer(mm, dtype=torch.uint8, count=nbytes, offset=-base % HUGE_PAGE)
    t.zero_()  # the first touch: the kernel backs each aligned 2 MiB with one huge page where it can
    if lock:
        cudart = torch.cuda.cudart()
        err = int(cudart.cudaHostRegister(t.data_ptr(), nbytes, 0))
        if err:
            raise RuntimeError(f"cudaHostRegister of {nbytes} bytes failed: CUDA error {err} "
                               f"({cudart.cudaGetErrorString(err)})")
        mm.locked_at = t.data_ptr()
        if not t.is_pinned():
            raise RuntimeError("memory registered with cudaHostRegister is not seen as pinned by torch")
    return t


def pinned_empty(shape, dtype: torch.dtype, pages: str | None = None) -> torch.Tensor:
    """An uninitialised host tensor, page-locked when CUDA is available (without an accelerator there is nothing to
    lock for, and it is plain host memory on the same pages). pages: "default" | "huge"; None: host_pages()."""
    pages = host_pages() if pages is None else pages
    if pages not in HOST_PAGES:
        raise ValueError(f"pages={pages!r}: allowed {HOST_PAGES}")
    lock = torch.cuda.is_available()
    if pages == "default":
        return torch.empty(shape, dtype=dtype, pin_memory=lock)
    nbytes = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
    return _huge_locked(max(nbytes, 1), lock)[:nbytes].view(dtype).view(shape)
