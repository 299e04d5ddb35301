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


@triton.jit
def round_bf16(x):
    """fp32 -> the nearest bf16 value (ties to even), kept in fp32. Integer arithmetic, so that the interpreter, whose
    .to(tl.bfloat16) truncates, rounds exactly as CUDA and torch do. Finite inputs."""
    b = x.to(tl.uint32, bitcast=True)
    b = b + ((b >> 16) & 1) + 0x7FFF
    return ((b >> 16) << 16).to(tl.float32, bitcast=True)


@triton.jit
def round_to(x, DT: tl.constexpr):
    """fp32 x rounded to the dtype DT (round-to-nearest-even), kept in fp32: x.to(DT).to(fp32) as on CUDA."""
    if DT == tl.bfloat16:
        y = round_bf16(x)
    else:
        y = x.to(DT).to(tl.float32)
    return y


@triton.jit
def fwht_butterfly(x, BN: tl.constexpr, D: tl.constexpr, LOG2D: tl.constexpr):
    """Unnormalized Walsh-Hadamard transform of every row of x (BN, D) fp32 with exactly the additions, in exactly the
    order, of shadowkv_lab.quant.hadamard.fwht (log2 D butterfly stages (a + b, a - b) on halves of blocks of 2h), so
    the result is bit-identical to the torch reference (launch with enable_fp_fusion=False when x comes from a
    product, so that no stage is contracted into an FMA). Layout shuffles, no tensor cores: costlier than a
    product with the Hadamard matrix, whose other summation order flips bf16 roundings where large terms cancel."""
    for i in tl.static_range(LOG2D):
        y = tl.permute(tl.reshape(x, (BN, D >> (i + 1), 2, 1 << i)), (0, 1, 3, 2))
        a, b = tl.split(y)
        x = tl.reshape(tl.permute(tl.join(a + b, a - b), (0, 1, 3, 2)), (BN, D))
    return x


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

    Cached by what determines the table: the rotary's frequencies and attention scaling (`rope.freq_key`, set by
    attention.make_rope), head dim, dtype and device; every layer of a model, and every model with the same rotary,
    shares one. Never by the function's id: a freed model's recycled id must not serve its table to the next model.
    A rope function without freq_key (or with None) is not cached."""
    freqs = getattr(rope, "freq_key", None)
    key = None if freqs is None else (freqs, d, dtype, str(device))
    tab = _ROPE_TABLES.get(key) if key is not None else None
    if tab is None or tab.shape[0] < n_pos:
        x = torch.zeros(1, n_pos, d, dtype=dtype, device=device)
        x[..., : d // 2] = 1
        pos = torch.arange(n_pos, device=device).unsqueeze(0)
        tab = rope(x, pos).reshape(n_pos, d).contiguous()
        if key is not None:
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
