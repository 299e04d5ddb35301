"""FP8 E4M3 storage: plain cast, no scale, saturating at +-448."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import QuantizedTensor, Quantizer

E4M3_MAX = 448.0


def to_e4m3(x: torch.Tensor) -> torch.Tensor:
    """Saturating round-to-nearest cast to float8_e4m3fn.

    The clamp matters: an out-of-range cast is NaN on some backends instead of saturating.
    """
    return x.float().clamp(-E4M3_MAX, E4M3_MAX).to(torch.float8_e4m3fn)


@dataclass(repr=False)
class FP8Quantizer(Quantizer):
    """x -> float8_e4m3fn (held as its uint8 bit pattern, which every backend can index/pin)."""

    def __post_init__(self):
        self.name = "fp8"

    def row_bits(self, C: int) -> float:
        return 8.0 * C

    def quantize(self, x: torch.Tensor) -> QuantizedTensor:
        x = self._check_input(x)
        bits = to_e4m3(x).view(torch.uint8)
        return QuantizedTensor(self.name, tuple(x.shape), {"data": bits}, row_bits=self.row_bits(x.shape[1]))

    def dequantize(self, qt: QuantizedTensor) -> torch.Tensor:
        return qt.rows["data"].view(torch.float8_e4m3fn).float()
