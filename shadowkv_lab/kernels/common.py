"""Shared helpers of the Triton kernels: when to run them, fp8 decoding, the in-register Walsh-Hadamard transform,
the bf16 RoPE table taken from the model's own rotary function.

Kernels run on CUDA tensors, or anywhere under TRITON_INTERPRET=1 (CPU tests). Nothing here falls back silently.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def can_run(*tensors: torch.Tensor) -> bool:
    """True where the Triton kernels can run on these tensors: CUDA (host-pinned sources allowed), or the interpreter."""
    return interpreting() or any(t.is_cuda for t in tensors)


def host_arg(t: torch.Tensor):
    """A kernel argument for a source that may live in pinned host memory: on CUDA such a tensor is passed as a
    plain pointer (Triton's TensorWrapper); the driver maps it (UVA) and the kernel reads it zero-copy over PCIe."""
    if t.is_cuda or interpreting():
        return t
    if not t.is_pinned():
        raise ValueError("a host-memory source must be pinned to be read by a CUDA kernel (RowStore pins on CUDA)")
    from triton.runtime.jit import TensorWrapper

    return TensorWrapper(t, t.dtype)


def next_pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def hadamard(g: int, device, dtype=torch.float32) -> torch.Tensor:
    """Sylvester Hadamard matrix (g, g), unnormalized; symmetric, H H = g I."""
    H = torch.ones(1, 1, dtype=dtype, device=device)
    while H.shape[0] < g:
        H = torch.cat([torch.cat([H, H], 1), torch.cat([H, -H], 1)], 0)
    return H


def hadamard_split(g: int) -> tuple[int, int]:
    """g = g1 * g2 for the Kronecker form H_g = H_g1 (x) H_g2 (first factor on the high index bits).
    g <= 128: one dense factor (g1 = 1). Both factors >= 16 for tl.dot."""
    if g & (g - 1) or g < 16:
        raise ValueError(f"Hadamard group {g} must be a power of two >= 16 for the Triton kernels")
    if g <= 128:
        return 1, g
    g2 = 32 if g >= 1024 else 16
    return g // g2, g2


def hadamard_factors(g: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(h1, h2) fp32 for fwht_rows; h1 is a 1x1 dummy when g <= 128."""
    g1, g2 = hadamard_split(g)
    return hadamard(max(g1, 1), device), hadamard(g2, device)


@triton.jit
def fwht_rows(x, h1, h2, BN: tl.constexpr, G1: tl.constexpr, G2: tl.constexpr):
    """Unnormalized Walsh-Hadamard transform of every row of x (BN, G1*G2) fp32 as H_G1 (x) H_G2: view a row as
    (G1, G2), right-multiply by H_G2 (h2), transpose, right-multiply by H_G1 (h1), transpose back.
    G1 == 1: one dense product with h2 (g <= 128). tf32x3 keeps near-fp32 accuracy on the tensor cores."""
    if G1 == 1:
        y = tl.dot(x, h2, input_precision="tf32x3")
    else:  # (no early return: Triton would still compile the code after it)
        y = tl.reshape(tl.dot(tl.reshape(x, (BN * G1, G2)), h2, input_precision="tf32x3"), (BN, G1, G2))
        y = tl.reshape(tl.permute(y, (0, 2, 1)), (BN * G2, G1))
        y = tl.dot(y, h1, input_precision="tf32x3")
        y = tl.reshape(tl.permute(tl.reshape(y, (BN, G2, G1)), (0, 2, 1)), (BN, G1 * G2))
    return y


# The interpreter's bf16 tl.dot returns garbage (triton 3.9): kernels get F32_DOT = interpreting() and upcast.
@triton.jit
def mma(a, b, F32_DOT: tl.constexpr):
    """tl.dot(a, b) with fp32 accumulation; operands upcast to fp32 under the interpreter only."""
    if F32_DOT:
        return tl.dot(a.to(tl.float32), b.to(tl.float32))
    return tl.dot(a, b)


@triton.jit
def e4m3_to_f32(b):
    """uint8 bit patterns of float8_e4m3fn -> fp32 (the stores hold fp8 as uint8)."""
    return b.to(tl.float8e4nv, bitcast=True).to(tl.float32)


_ROPE_TABLES: dict = {}


def rope_table(rope, n_pos: int, d: int, dtype: torch.dtype, device) -> torch.Tensor:
    """(n_pos, d) table [cos[:d/2] | sin[:d/2]] at positions 0..n_pos-1, exactly the cos/sin the model's rotary
    function uses (in its dtype): rope(x, p) = x*cos + rotate_half(x)*sin applied to x = [1..1, 0..0].
    Cached per rope function, length, dtype and device (every layer of a model shares one)."""
    key = (id(rope), d, dtype, str(device))
    tab = _ROPE_TABLES.get(key)
    if tab is None or tab.shape[0] < n_pos:
        x = torch.zeros(1, n_pos, d, dtype=dtype, device=device)
        x[..., : d // 2] = 1
        pos = torch.arange(n_pos, device=device).unsqueeze(0)
        tab = rope(x, pos).reshape(n_pos, d).contiguous()
        _ROPE_TABLES[key] = tab
    return tab


def rope_table_from_freqs(inv_freq: torch.Tensor, n_pos: int, dtype: torch.dtype, scaling: float = 1.0) -> torch.Tensor:
    """The same table from HF's inv_freq (benchmarks without a model): freqs = pos * inv_freq in fp32."""
    f = torch.arange(n_pos, device=inv_freq.device, dtype=torch.float32)[:, None] * inv_freq.float()[None]
    return torch.cat([f.cos() * scaling, f.sin() * scaling], 1).to(dtype).contiguous()


def torch_rope(x: torch.Tensor, positions: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Reference RoPE from the table, in x's dtype like HF: x (..., k, d), positions (..., k)."""
    half = x.shape[-1] // 2
    t = table[positions]
    cos = torch.cat([t[..., :half], t[..., :half]], -1).to(x.dtype)
    sin = torch.cat([t[..., half:], t[..., half:]], -1).to(x.dtype)
    rot = torch.cat([-x[..., half:], x[..., :half]], -1)
    return x * cos + rot * sin
