"""Residual landmark quantization: coarse meta-landmarks (main quantizer) + per-row residuals."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .base import QuantizedTensor, Quantizer


@dataclass(repr=False)
class ResidualQuantizer(Quantizer):
    """docs/algorithms.md, "Residual landmarks".

    Rows of x (M, C) are landmarks in order. Pad M to a multiple of m by repeating the last row;
    meta_j = mean of rows [j m, (j+1) m), quantize-dequantized with `main`; residual
    r_i = x_i - meta_deq(i // m) quantized with `res` (own scales); x_hat = meta_deq + r_deq.
    Only the M real residual rows are stored. Groups are consecutive rows of one call, so call it
    per KV head (or on rows already laid out per head).
    QuantizedTensor: parts "meta" (ceil(M/m) rows) and "res" (M rows); rows["meta_row"] (M,) int64
    maps each row to its meta row (implicit i // m in a packed layout, so it counts 0 bits).
    Bits per element = (b_main + s/g)/m + b_res + s/g, e.g. m=2, EDEN4-256 + EDEN16-256, g=128,
    fp32 scales: 2.25/2 + 0.75 = 1.875 (1.5 + 0.375 scale overhead).
    """

    m: int
    main: Quantizer
    res: Quantizer

    def __post_init__(self):
        if not isinstance(self.m, int) or self.m < 1:
            raise ValueError(f"residual meta chunk size m={self.m!r} must be an integer >= 1")
        for q in (self.main, self.res):
            if isinstance(q, ResidualQuantizer):
                raise ValueError(f"nested residual quantizer {q.name!r} not allowed")
        self.name = f"residual:m={self.m},main={self.main.name},res={self.res.name}"

    def row_bits(self, C: int) -> float:
        # Large-M average; bits_per_element(C, n_rows) is exact for a given M.
        return self.main.row_bits(C) / self.m + self.res.row_bits(C)

    def const_bits(self) -> float:
        return self.main.const_bits() + self.res.const_bits()

    def bits_per_element(self, C: int, n_rows: int | None = None) -> float:
        if not n_rows:
            return self.row_bits(C) / C
        bits = math.ceil(n_rows / self.m) * self.main.row_bits(C) + n_rows * self.res.row_bits(C)
        return (bits + self.const_bits()) / (n_rows * C)

    def quantize(self, x: torch.Tensor) -> QuantizedTensor:
        x = self._check_input(x)
        M, C = x.shape
        n_meta = math.ceil(M / self.m)
        if M:
            xp = torch.cat([x, x[-1:].expand(n_meta * self.m - M, C)])  # repeat the last landmark
        else:
            xp = x
        meta = xp.view(n_meta, self.m, C).mean(1)  # (M/m, C)
        meta_qt = self.main.quantize(meta)
        meta_row = torch.arange(M, device=x.device) // self.m
        residual = x - self.main.dequantize(meta_qt)[meta_row]
        return QuantizedTensor(
            self.name,
            (M, C),
            {"meta_row": meta_row},
            parts={"meta": meta_qt, "res": self.res.quantize(residual)},
            part_index={"meta": "meta_row"},
        )

    def dequantize(self, qt: QuantizedTensor) -> torch.Tensor:
        meta = self.main.dequantize(qt.parts["meta"])
        return meta[qt.rows["meta_row"].to(meta.device)] + self.res.dequantize(qt.parts["res"])
