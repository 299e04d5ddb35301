"""Storage for per-token rows of one layer: offloaded row stores and the growable generated-token buffer."""

from __future__ import annotations

import torch

from .config import NATIVE


class RowStore:
    """Rows of one layer for prompt positions [0, P): values, or exact pre-RoPE keys, kept where `home` says.

    Layout follows the quantizer group: a group of at most head_dim channels quantizes each head's row on its own
    (head-major, gather per head); a larger group (e.g. all H*d channels of a token, as YAKV does) needs whole
    token rows (token-major: gather the union of positions selected by any head, then split per head).

    x: (H, P, d). gather(positions (H, k)) -> (H, k, d) in `compute_dtype` on `compute_device`.
    """

    def __init__(self, x: torch.Tensor, fmt: str, group: int | None, home: torch.device, compute_device: torch.device, pin: bool):
        self.H, self.P, self.d = x.shape
        self.fmt = fmt
        self.dtype = x.dtype
        self.compute_device = compute_device
        self.home = home
        if fmt == NATIVE:
            self.quantizer = None
            self.token_major = False
            data = x.to(home, copy=True, memory_format=torch.contiguous_format)  # own copy, not a view of the prefill
            self.data = data.pin_memory() if pin else data
            return
        from shadowkv_lab.quant import make_quantizer

        self.group = group or self.H * self.d
        self.token_major = self.group > self.d
        self.quantizer = make_quantizer(fmt, group=self.group)
        rows = x.transpose(0, 1).reshape(self.P, self.H * self.d) if self.token_major else x.reshape(self.H * self.P, self.d)
        qt = self.quantizer.quantize(rows).to(home)
        self.data = qt.pin_memory() if pin else qt

    def gather(self, positions: torch.Tensor) -> torch.Tensor:
        """positions: (H, k) long, any device -> (H, k, d) on the compute device."""
        H, k = positions.shape
        pos = positions.to(self.home)
        if self.quantizer is None:
            rows = torch.gather(self.data, 1, pos.unsqueeze(-1).expand(H, k, self.d))
            return rows.to(self.compute_device, non_blocking=True)
        if self.token_major:
            uniq, inverse = torch.unique(pos, return_inverse=True)
            deq = self.quantizer.dequantize(self.data.select_rows(uniq).to(self.compute_device))  # (U, H*d)
            deq = deq.view(-1, self.H, self.d).to(self.dtype)
            heads = torch.arange(H, device=self.compute_device).unsqueeze(1).expand(H, k)
            return deq[inverse.to(self.compute_device), heads]
        flat = (pos + torch.arange(H, device=pos.device).unsqueeze(1) * self.P).reshape(-1)
        deq = self.quantizer.dequantize(self.data.select_rows(flat).to(self.compute_device))
        return deq.view(H, k, self.d).to(self.dtype)

    def all_rows(self) -> torch.Tensor:
        """Every row, dequantized, (H, P, d) on the compute device (used by the exact-attention analysis only)."""
        pos = torch.arange(self.P).unsqueeze(0).expand(self.H, self.P)
        return self.gather(pos)

    @property
    def storage_bytes(self) -> int:
        return self.data.nbytes if self.quantizer is None else self.data.nbytes_storage

    @property
    def packed_bytes(self) -> int:
        return self.data.nbytes if self.quantizer is None else self.data.nbytes_packed


class GrowBuffer:
    """Exact K/V of generated tokens, (H, T, d); grows by doubling so long generations are never truncated."""

    def __init__(self, H: int, d: int, dtype: torch.dtype, device: torch.device, capacity: int = 64):
        self.k = torch.empty(H, capacity, d, dtype=dtype, device=device)
        self.v = torch.empty(H, capacity, d, dtype=dtype, device=device)
        self.length = 0

    def append(self, k: torch.Tensor, v: torch.Tensor) -> None:
        """k, v: (H, d)."""
        if self.length == self.k.shape[1]:
            new_cap = 2 * self.k.shape[1]
            self.k = torch.cat([self.k, torch.empty_like(self.k)], dim=1)[:, :new_cap]
            self.v = torch.cat([self.v, torch.empty_like(self.v)], dim=1)[:, :new_cap]
        self.k[:, self.length] = k
        self.v[:, self.length] = v
        self.length += 1

    def view(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.k[:, : self.length], self.v[:, : self.length]

    @property
    def storage_bytes(self) -> int:
        return self.k.nbytes + self.v.nbytes
