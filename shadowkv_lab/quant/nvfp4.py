"""NVFP4: E2M1 elements in blocks of 16 with E4M3 block scales and an fp32 per-tensor scale."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .base import QuantizedTensor, Quantizer
from .fp8 import E4M3_MAX, to_e4m3

BLOCK = 16
E2M1_MAX = 6.0
E2M1_VALUES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
# Midpoints between consecutive magnitudes. searchsorted(side="left") counts boundaries strictly
# below |v|, so a value exactly on a midpoint goes to the smaller magnitude (reference tie rule).
_BOUNDS = tuple((a + b) / 2 for a, b in zip(E2M1_VALUES[:-1], E2M1_VALUES[1:]))
MIN_BLOCK_SCALE = 1e-8


def round_e2m1(v: torch.Tensor) -> torch.Tensor:
    """4-bit codes (sign << 3 | magnitude index) of v (already in block-scaled units), uint8."""
    bounds = torch.tensor(_BOUNDS, dtype=torch.float32, device=v.device)
    mag = torch.searchsorted(bounds, v.abs().clamp(max=E2M1_MAX).contiguous(), side="left")
    return (mag | ((v < 0).long() << 3)).to(torch.uint8)


def decode_e2m1(codes: torch.Tensor) -> torch.Tensor:
    """uint8 codes -> float32 values."""
    table = torch.tensor(E2M1_VALUES, dtype=torch.float32, device=codes.device)
    c = codes.long()
    val = table[c & 7]
    return torch.where((c & 8) != 0, -val, val)


@dataclass(repr=False)
class NVFP4Quantizer(Quantizer):
    """NVFP4 fake/real quantization along channels.

    quantize: x (N, C) -> codes (N, C_pad/2) uint8 (two E2M1 codes per byte, low nibble first),
    block scales (N, C_pad/16) E4M3 (held as uint8 bit patterns), global scale () fp32;
    C is zero-padded to a multiple of 16.
    Bits: 4 + 8/16 = 4.5 per element (bits_per_element(C, n_rows) adds 32/(N C) for the global scale).
    """

    def __post_init__(self):
        self.name = "nvfp4"

    def row_bits(self, C: int) -> float:
        nblocks = math.ceil(C / BLOCK)
        return float(nblocks * (BLOCK * 4 + 8))

    def const_bits(self) -> float:
        return 32.0

    def quantize(self, x: torch.Tensor) -> QuantizedTensor:
        x = self._check_input(x)
        N, C = x.shape
        nb = math.ceil(C / BLOCK)
        blocks = F.pad(x, (0, nb * BLOCK - C)).view(N, nb, BLOCK)  # (N, B, 16)
        scale = (blocks.abs().amax(-1) / E2M1_MAX).clamp(min=MIN_BLOCK_SCALE)  # (N, B)
        # Global scale maps the largest block scale to the top of E4M3's range.
        smax = scale.max() if scale.numel() else torch.tensor(1.0, device=x.device)
        gscale = (E4M3_MAX / smax).float()
        scale_q = to_e4m3(scale * gscale)  # (N, B) e4m3
        scale_deq = scale_q.float() / gscale
        # A block whose scale underflows E4M3 is tiny next to the largest block: store zeros.
        safe = torch.where(scale_deq > 0, scale_deq, torch.ones_like(scale_deq))
        v = torch.where(scale_deq[..., None] > 0, blocks / safe[..., None], torch.zeros_like(blocks))
        codes = round_e2m1(v).view(N, nb * BLOCK)  # (N, C_pad)
        packed = codes[:, 0::2] | (codes[:, 1::2] << 4)
        return QuantizedTensor(
            self.name,
            (N, C),
            {"codes": packed, "scales": scale_q.view(torch.uint8)},
            {"global_scale": gscale.reshape(())},
            row_bits=self.row_bits(C),
            const_bits=self.const_bits(),
        )

    def dequantize(self, qt: QuantizedTensor) -> torch.Tensor:
        N, C = qt.shape
        nb = math.ceil(C / BLOCK)
        packed = qt.rows["codes"]
        codes = torch.stack((packed & 15, packed >> 4), dim=-1).view(N, nb, BLOCK)
        scale = qt.rows["scales"].view(torch.float8_e4m3fn).float() / qt.consts["global_scale"]
        return (decode_e2m1(codes) * scale[..., None]).view(N, nb * BLOCK)[:, :C]
