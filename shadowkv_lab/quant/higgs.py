"""HIGGS: Hadamard rotation + L2 scale per group + nearest point of an MSE-optimal Gaussian grid."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .base import QuantizedTensor, Quantizer
from .grids import load_grid, nearest_index
from .hadamard import fwht, is_power_of_two

SCALE_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def higgs_bits(p: int, n: int) -> float:
    """Code bits per dimension of the EDEN{p}-{n} grid: log2(n) / p."""
    return math.log2(n) / p


def index_dtype(n: int) -> torch.dtype:
    """Narrowest integer dtype holding indices 0..n-1 (never wraps: n = 4096 -> int16)."""
    if n <= 256:
        return torch.uint8
    if n <= 32768:
        return torch.int16
    return torch.int32


def random_signs(g: int, seed: int, device=None) -> torch.Tensor:
    """Fixed seeded +-1 diagonal, (g,) float32."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    return (torch.randint(0, 2, (g,), generator=gen) * 2 - 1).float().to(device)


@dataclass(repr=False)
class HiggsQuantizer(Quantizer):
    """HIGGS with the EDEN{p}-{n} grid and Hadamard group `group` (docs/algorithms.md, "HIGGS").

    quantize: x (N, C) -> codes (N, G * ceil(g/p)) in index_dtype(n), scales (N, G) in scale_dtype,
    with g = group, G = ceil(C / g). Bits per element = (G ceil(g/p) log2(n) + G scale_bits) / C,
    e.g. EDEN4-256, g = 128, fp32 scales: 2 + 32/128 = 2.25.
    signs: multiply by a fixed seeded +-1 diagonal before the rotation (documented option; the
    reference has none).
    """

    p: int
    n: int
    group: int
    signs: bool = False
    seed: int = 0
    scale_dtype: str = "fp32"

    def __post_init__(self):
        if not is_power_of_two(self.group):
            raise ValueError(f"HIGGS group {self.group!r} must be a power of two (e.g. 128, 1024)")
        if self.group < self.p:
            raise ValueError(f"HIGGS group {self.group} must be >= grid dimension p={self.p}")
        if self.scale_dtype not in SCALE_DTYPES:
            raise ValueError(f"scale_dtype {self.scale_dtype!r} not allowed; allowed: {sorted(SCALE_DTYPES)}")
        load_grid(self.p, self.n)  # fail early on a missing grid
        self.name = f"higgs-{self.p}-{self.n}" + (":signs" if self.signs else "")
        if self.scale_dtype != "fp32":
            self.name += f":scale={self.scale_dtype}"
        self.vecs_per_group = math.ceil(self.group / self.p)
        self._signs = {}

    # -- accounting -----------------------------------------------------------------------------
    @property
    def scale_bits(self) -> int:
        return torch.finfo(SCALE_DTYPES[self.scale_dtype]).bits

    def row_bits(self, C: int) -> float:
        G = math.ceil(C / self.group)
        return float(G * (self.vecs_per_group * math.log2(self.n) + self.scale_bits))

    # -- helpers --------------------------------------------------------------------------------
    def _sign_vec(self, device) -> torch.Tensor:
        key = str(device)
        if key not in self._signs:
            self._signs[key] = random_signs(self.group, self.seed, device)
        return self._signs[key]

    # -- quantize / dequantize --------------------------------------------------------------------
    def quantize(self, x: torch.Tensor) -> QuantizedTensor:
        x = self._check_input(x)  # fp32
        N, C = x.shape
        g, p = self.group, self.p
        G = math.ceil(C / g)
        xg = F.pad(x, (0, G * g - C)).view(N, G, g)
        if self.signs:
            xg = xg * self._sign_vec(x.device)
        scales = xg.norm(dim=-1).to(SCALE_DTYPES[self.scale_dtype])  # (N, G)
        # Normalise by the *stored* scale so the grid rounds exactly what dequantize rescales.
        s = scales.float()[..., None]
        y = fwht(xg) / torch.where(s > 0, s, torch.ones_like(s))  # |y|^2 = g: unit mean square
        y = F.pad(y, (0, self.vecs_per_group * p - g)).reshape(-1, p)  # (N*G*V, p)
        grid = load_grid(p, self.n, x.device)
        codes = nearest_index(y, grid).to(index_dtype(self.n)).view(N, G * self.vecs_per_group)
        return QuantizedTensor(
            self.name, (N, C), {"codes": codes, "scales": scales}, row_bits=self.row_bits(C)
        )

    def dequantize(self, qt: QuantizedTensor) -> torch.Tensor:
        N, C = qt.shape
        g, p = self.group, self.p
        G = math.ceil(C / g)
        codes, scales = qt.rows["codes"], qt.rows["scales"]
        grid = load_grid(p, self.n, codes.device)
        y = grid[codes.long()].view(N, G, self.vecs_per_group * p)[..., :g]
        # s = 0 (all-zero group) gives exact zeros: no division anywhere on this path.
        xg = fwht(y * scales.float()[..., None]) / g
        if self.signs:
            xg = xg * self._sign_vec(codes.device)
        return xg.reshape(N, G * g)[:, :C]
