"""Storage for per-token rows of one layer: offloaded row stores and the growable generated-token buffer."""

from __future__ import annotations

import dataclasses

import torch

from .config import NATIVE
from .key_offset import FLAG, KeyOffset, fit_offset

# None: zero-copy wherever it applies. Tests set True to drive the path on CPU tensors under TRITON_INTERPRET=1, and
# False to get the host-side gather (the reference) on a GPU.
FORCE_ZERO_COPY: bool | None = None


def pinned_host(t: torch.Tensor) -> bool:
    """t lives in page-locked host memory (what a CUDA kernel can read zero-copy)."""
    return t.device.type == "cpu" and t.is_pinned()


def to_home(x: torch.Tensor, home: torch.device, pin: bool) -> torch.Tensor:
    """A contiguous copy of x at `home`, page-locked when `pin` (host homes only). One copy straight into the
    destination: `x.to("cpu").pin_memory()` would copy a GPU tensor twice, through pageable memory first. Without an
    accelerator there is nothing to page-lock for, and the copy is plain host memory."""
    if home.type != "cpu":
        return x.to(home, copy=True, memory_format=torch.contiguous_format)
    out = torch.empty(x.shape, dtype=x.dtype, device=home, pin_memory=pin and torch.cuda.is_available())
    return out.copy_(x)


def zero_copy(src: torch.Tensor, device: torch.device) -> bool:
    """True when rows of `src` are read by the GPU itself: src in pinned host memory, compute on CUDA. The indices
    then never visit the host (no synchronisation per layer) and only the selected rows cross PCIe."""
    if FORCE_ZERO_COPY is not None:
        return FORCE_ZERO_COPY
    return device.type == "cuda" and pinned_host(src)


def take_rows(src: torch.Tensor, rows: torch.Tensor, device: torch.device) -> torch.Tensor:
    """src[rows] on `device`, bit for bit. src (N, ...) rows with unit-stride trailing dims; rows (M,) long."""
    if not zero_copy(src, device):
        return src[rows.to(src.device)].to(device, non_blocking=True)
    from shadowkv_lab.kernels.fetch import copy_rows

    tail = src.shape[1:]
    flat = src if src.dim() == 2 else src.unsqueeze(1) if src.dim() == 1 else src.flatten(1)
    return copy_rows(flat, rows.to(device)).view(rows.shape[0], *tail)


def take_qrows(q, rows: torch.Tensor, device: torch.device):
    """QuantizedTensor.select_rows(rows) on `device`; zero-copy per row tensor where the store allows it."""
    first = next(iter(q.rows.values()))
    if q.parts or not zero_copy(first, device):
        return q.select_rows(rows).to(device)
    return dataclasses.replace(q, shape=(int(rows.numel()), q.shape[1]),
                               rows={k: take_rows(v, rows, device) for k, v in q.rows.items()},
                               consts={k: v.to(device) for k, v in q.consts.items()})


def head_rows(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """x (H, P, d), a head-major view whose rows are d apart -> (rows (H * Ps, d), Ps): row h * Ps + p is x[h, p]
    (Ps = P, or the padded length of a stack x is a view of)."""
    H, P, d = x.shape
    if x.stride(2) != 1 or x.stride(1) != d or x.stride(0) % d:
        raise ValueError(f"head_rows needs rows d apart, got strides {x.stride()} for shape {tuple(x.shape)}")
    Ps = x.stride(0) // d
    return x.as_strided((H * Ps, d), (d, 1)), Ps


class RowStore:
    """Rows of one layer for prompt positions [0, P): values, or exact pre-RoPE keys, kept where `home` says.

    Layout follows the quantizer group: a group of at most head_dim channels quantizes each head's row on its own
    (head-major, gather per head); a larger group (e.g. all H*d channels of a token, as YAKV does) needs whole
    token rows (token-major: gather the union of positions selected by any head, then split per head).

    x: (H, P, d). gather(positions (H, k)) -> (H, k, d) in `compute_dtype` on `compute_device`.
    """

    def __init__(self, x: torch.Tensor, fmt: str, group: int | None, home: torch.device, compute_device: torch.device, pin: bool,
                 offset: str = "none", bias: torch.Tensor | None = None):
        """offset: a key-offset rule of cache/key_offset.py, applied before quantizing (quantized formats only);
        bias: the layer's k_proj bias, (H*d,) or None, for the "bias" rule."""
        self.H, self.P, self.d = x.shape
        self.fmt = fmt
        self.dtype = x.dtype
        self.compute_device = compute_device
        self.home = home
        self.offset: KeyOffset | None = None
        if fmt == NATIVE:
            if offset != "none":
                raise ValueError(f"key offset {offset!r} needs a quantized format, got {fmt!r}")
            self.quantizer = None
            self.token_major = False
            self.data = to_home(x, home, pin)  # own copy, not a view of the prefill
            return
        from shadowkv_lab.quant import make_quantizer

        self.group = group or self.H * self.d
        self.token_major = self.group > self.d
        self.quantizer = make_quantizer(fmt, group=self.group)
        rows = x.transpose(0, 1).reshape(self.P, self.H * self.d) if self.token_major else x
        flag = None
        if offset != "none":
            self.offset = KeyOffset(offset, fit_offset(x, offset, bias).to(compute_device), self.token_major)
            rows, flag = self.offset.subtract(rows.float(), self.H)
        qt = self.quantizer.quantize(rows.reshape(-1, rows.shape[-1]))
        if flag is not None:  # one flag per quantized row, 1 bit packed
            qt = dataclasses.replace(qt, rows={**qt.rows, FLAG: flag.reshape(-1).to(torch.uint8)}, row_bits=qt.row_bits + 1)
        self.data = qt._map(lambda t: to_home(t, home, pin)) if home.type == "cpu" else qt.to(home)

    def restore(self, deq: torch.Tensor, qrows, mu: torch.Tensor) -> torch.Tensor:
        """Dequantized rows (fp32) of the QuantizedTensor `qrows` -> the model dtype, with the key offset added
        back (KeyOffset.restore). deq (..., C) shaped like the rows' flag (...); mu broadcastable to deq."""
        x = deq.to(self.dtype)
        if self.offset is None:
            return x
        flag = qrows.rows[FLAG].view(deq.shape[:-1]).bool() if self.offset.selective else None
        return self.offset.restore(x, flag, mu)

    def gather(self, positions: torch.Tensor) -> torch.Tensor:
        """positions: (H, k) long, any device -> (H, k, d) on the compute device."""
        H, k = positions.shape
        dev = self.compute_device
        zc = zero_copy(self.row_tensor, dev)
        pos = positions.to(dev if zc else self.home)
        if self.quantizer is None:
            if zc:
                rows, Ps = head_rows(self.data)
                flat = (pos + torch.arange(H, device=dev).unsqueeze(1) * Ps).reshape(-1)
                return take_rows(rows, flat, dev).view(H, k, self.d)
            rows = torch.gather(self.data, 1, pos.unsqueeze(-1).expand(H, k, self.d))
            return rows.to(dev, non_blocking=True)
        if self.token_major:
            uniq, inverse = torch.unique(pos, return_inverse=True)
            qr = take_qrows(self.data, uniq, dev)
            mu = self.offset.row_mu(self.H) if self.offset is not None else None
            deq = self.restore(self.quantizer.dequantize(qr), qr, mu).view(-1, self.H, self.d)  # (U, H, d)
            heads = torch.arange(H, device=dev).unsqueeze(1).expand(H, k)
            return deq[inverse.to(dev), heads]
        flat = (pos + torch.arange(H, device=pos.device).unsqueeze(1) * self.P).reshape(-1)
        qr = take_qrows(self.data, flat, dev)
        mu = self.offset.row_mu(H) if self.offset is not None else None
        return self.restore(self.quantizer.dequantize(qr).view(H, k, self.d), qr, mu)

    @property
    def row_tensor(self) -> torch.Tensor:
        """A tensor holding the store's rows (the native data, or a quantized store's first row tensor): where it lives
        and whether it is pinned say how the rows can be gathered."""
        return self.data if self.quantizer is None else next(iter(self.data.rows.values()))

    @property
    def storage_bytes(self) -> int:
        """Bytes of the rows where they live (the key offset, kept on the device, is reported on its own)."""
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
