"""Fast Walsh-Hadamard transform (unnormalized, Sylvester order), pure torch, any device."""
from __future__ import annotations

import torch


def is_power_of_two(g: int) -> bool:
    return isinstance(g, int) and g >= 1 and (g & (g - 1)) == 0


def fwht(x: torch.Tensor) -> torch.Tensor:
    """Unnormalized Walsh-Hadamard transform along the last dim.

    x: (..., g) with g a power of two -> (..., g), same dtype. Equals x @ H with H the Sylvester
    Hadamard matrix H[i, j] = (-1)^popcount(i & j); H is symmetric and H H = g I, so the inverse
    is fwht(y) / g. log2(g) butterfly stages of (a + b, a - b) on halves of blocks of size 2h.
    """
    g = x.shape[-1]
    if not is_power_of_two(g):
        raise ValueError(f"fwht needs a power-of-two last dim, got {g}")
    shape = x.shape
    rows = x.numel() // g if g else 0  # explicit: view(-1, ...) is ambiguous for empty tensors
    y = x.reshape(rows, g)
    h = 1
    while h < g:
        y = y.view(rows, g // (2 * h), 2, h)
        a, b = y[:, :, 0], y[:, :, 1]
        y = torch.stack((a + b, a - b), dim=2)
        h *= 2
    return y.reshape(shape)


def hadamard_matrix(g: int, dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """Explicit (g, g) Sylvester Hadamard matrix (for tests and small reference computations)."""
    if not is_power_of_two(g):
        raise ValueError(f"hadamard_matrix needs a power of two, got {g}")
    H = torch.ones(1, 1, dtype=dtype, device=device)
    while H.shape[0] < g:
        H = torch.cat([torch.cat([H, H], 1), torch.cat([H, -H], 1)], 0)
    return H
