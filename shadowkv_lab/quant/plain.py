"""Plain floating-point storage: bf16 / fp16 / fp32 (no scales)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import QuantizedTensor, Quantizer

PLAIN_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


@dataclass(repr=False)
class PlainQuantizer(Quantizer):
    """Stores x cast to `dtype`; dequantize casts back to float32."""

    dtype_name: str = "bf16"

    def __post_init__(self):
        if self.dtype_name not in PLAIN_DTYPES:
            raise ValueError(f"plain dtype {self.dtype_name!r} not allowed; allowed: {sorted(PLAIN_DTYPES)}")
        self.dtype = PLAIN_DTYPES[self.dtype_name]
        self.name = self.dtype_name

    def row_bits(self, C: int) -> float:
        return float(C * torch.finfo(self.dtype).bits)

    def quantize(self, x: torch.Tensor) -> QuantizedTensor:
        self._check_input(x)
        # No copy when x already has the storage dtype: the QuantizedTensor just wraps it.
        data = x.to(self.dtype)
        return QuantizedTensor(self.name, tuple(x.shape), {"data": data}, row_bits=self.row_bits(x.shape[1]))

    def dequantize(self, qt: QuantizedTensor) -> torch.Tensor:
        return qt.rows["data"].float()
