"""QuantizedTensor container and the Quantizer interface shared by every format."""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch


@dataclass
class QuantizedTensor:
    """Quantized form of an (N, C) tensor.

    rows:   per-row tensors, leading dim N (codes, per-row scales); gathered by select_rows.
    consts: per-tensor tensors (e.g. the NVFP4 global scale); shared by every row.
    parts:  nested QuantizedTensors (residual: "meta", "res"). A part listed in part_index is
            addressed through an int64 row tensor (row i uses part row rows[key][i]); other parts
            are row-aligned with this tensor.
    row_bits / const_bits: ideal packed size (codes at log2(n) bits per vector, scales at their
            storage width), excluding parts, which report their own.
    """

    fmt: str
    shape: tuple[int, int]
    rows: dict[str, torch.Tensor]
    consts: dict[str, torch.Tensor] = field(default_factory=dict)
    row_bits: float = 0.0
    const_bits: float = 0.0
    parts: dict[str, "QuantizedTensor"] = field(default_factory=dict)
    part_index: dict[str, str] = field(default_factory=dict)

    def _tensors(self):
        yield from self.rows.values()
        yield from self.consts.values()
        for part in self.parts.values():
            yield from part._tensors()

    @property
    def device(self) -> torch.device:
        return next(self._tensors()).device

    @property
    def packed_bits(self) -> float:
        """Exact ideal packed size in bits."""
        own = self.shape[0] * self.row_bits + self.const_bits
        return own + sum(p.packed_bits for p in self.parts.values())

    @property
    def nbytes_packed(self) -> int:
        """Ideal packed size in bytes (bits rounded up to whole bytes)."""
        return math.ceil(self.packed_bits / 8)

    @property
    def nbytes_storage(self) -> int:
        """Bytes of the tensors actually held (simulation layout, not bit-packed)."""
        return sum(t.numel() * t.element_size() for t in self._tensors())

    def _map(self, fn) -> "QuantizedTensor":
        return replace(
            self,
            rows={k: fn(v) for k, v in self.rows.items()},
            consts={k: fn(v) for k, v in self.consts.items()},
            parts={k: p._map(fn) for k, p in self.parts.items()},
        )

    def to(self, device, non_blocking: bool = False) -> "QuantizedTensor":
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> "QuantizedTensor":
        """Page-locked copy for async host->device copies. No-op without an accelerator."""
        if not torch.cuda.is_available():
            return self
        return self._map(lambda t: t if t.is_cuda else t.pin_memory())

    def select_rows(self, idx: torch.Tensor) -> "QuantizedTensor":
        """QuantizedTensor holding rows idx (LongTensor (K,), any device) in that order.

        Indexed parts are compacted: only the part rows the selection uses are kept.
        """
        idx = torch.as_tensor(idx).long()
        rows = {k: v[idx.to(v.device)] for k, v in self.rows.items()}
        parts = {}
        for name, part in self.parts.items():
            key = self.part_index.get(name)
            if key is None:
                parts[name] = part.select_rows(idx)
            else:
                used, rows[key] = torch.unique(rows[key], return_inverse=True)
                parts[name] = part.select_rows(used)
        return replace(self, shape=(int(idx.numel()), self.shape[1]), rows=rows, parts=parts)


class Quantizer:
    """Interface: quantize (N, C) -> QuantizedTensor, dequantize -> (N, C) float32."""

    name: str

    def quantize(self, x: torch.Tensor) -> QuantizedTensor:
        raise NotImplementedError

    def dequantize(self, qt: QuantizedTensor) -> torch.Tensor:
        raise NotImplementedError

    def qdq(self, x: torch.Tensor) -> torch.Tensor:
        """Quantize-dequantize simulation; identical to dequantize(quantize(x))."""
        return self.dequantize(self.quantize(x))

    def row_bits(self, C: int) -> float:
        """Ideal packed bits of one row of C channels (per-row data only)."""
        raise NotImplementedError

    def const_bits(self) -> float:
        """Ideal packed bits of per-tensor data (shared by all rows)."""
        return 0.0

    def bits_per_element(self, C: int, n_rows: int | None = None) -> float:
        """Exact bits per element incl. scales and padding for rows of C channels.

        Per-tensor constants (NVFP4's fp32 global scale) are amortised over n_rows * C elements
        when n_rows is given, and left out (the large-N limit) when it is not.
        """
        bits = self.row_bits(C) / C
        if n_rows:
            bits += self.const_bits() / (n_rows * C)
        return bits

    def _check_input(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() != 2 or not x.is_floating_point():
            what = f"{tuple(x.shape)} {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{self.name}: expected a 2-D (N, C) float tensor, got {what}")
        return x.float()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"
