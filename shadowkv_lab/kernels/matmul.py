"""Batch-invariant Linear and RMSNorm for decoding many rows in one batch.

A cell's generated tokens must not depend on its batch mates or on the batch size B. cuBLAS picks its GEMM kernel
(tile shape, split-K) by M = B, and torch's reductions pick their strategy by shape, so on CUDA row i's logits can
differ in the last bits between B = 1 and B = 72, and greedy decoding then diverges. Here:

    linear(x, weight, bias)      one Triton kernel with ONE fixed configuration (CONFIG: tile sizes, warps, stages);
                                 no autotuning, no split-K, nothing chosen by M. Every output element is the fp32 sum
                                 over K in BLOCK_K steps, in the same order, by the same instructions, whatever M is
                                 and whatever the other rows hold (rows past M are masked to zero).
    rms_norm(x, weight, eps)     HF's Qwen2/Llama/Qwen3 RMSNorm, one row per program, one masked block over the hidden
                                 dim (next power of two), so one fixed reduction tree per row.
    invariant_decode(model)      a context manager routing the model's nn.Linear and RMSNorm modules through the two.

Both launch without host syncs (no .item(), output allocated on the device): CUDA-graph capturable.
The kernels run on CUDA tensors, or anywhere under TRITON_INTERPRET=1 (CPU tests).
"""

from __future__ import annotations

import contextlib
import threading
import types
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from .common import can_run, interpreting, next_pow2, round_to


@dataclass(frozen=True)
class LinearConfig:
    """One fixed launch configuration of the linear kernel."""

    block_m: int
    block_n: int
    block_k: int
    num_warps: int
    num_stages: int


# The one configuration `linear` uses, for every M. Decode GEMMs (M <= 256) are bound by reading the weight once
# (N*K*2 bytes), so the tile is chosen for streaming weights, not for FLOPs:
#   BLOCK_M 64   the smallest M of a Hopper warpgroup MMA (wgmma m64): M <= 64 is one M-tile (the x tile is small),
#                M = 72 / 216 are 2 / 4 M-tiles whose programs run adjacently and share the weight tile through L2.
#   BLOCK_N 64   many programs on the narrow projections (N = 1536 -> 24 N-tiles, 8960 -> 140, 151936 -> 2374)
#                without making the x tile the larger share of shared memory.
#   BLOCK_K 128  long contiguous weight reads (256 bytes per row per step); K = 1536 is 12 steps, 8960 is 70.
#   4 warps, 4 stages: 32 KiB of shared memory per stage, 128 KiB in flight per program (fits the H200's 228 KiB).
# Changing it changes every result in the last bits (still batch-invariant); benchmarks/bench_linear.py --sweep
# times alternatives.
CONFIG = LinearConfig(block_m=64, block_n=64, block_k=128, num_warps=4, num_stages=4)

_TL_DTYPES = {torch.bfloat16: tl.bfloat16, torch.float16: tl.float16, torch.float32: tl.float32}


# M is not specialized: M = 1 (or M % 16 == 0) must not compile to another instruction sequence than any other M.
@triton.jit(do_not_specialize=["M"])
def _linear_kernel(x_ptr, w_ptr, b_ptr, out_ptr, M, N, K, stride_xm, stride_wn, stride_wk, stride_om,
                   HAS_BIAS: tl.constexpr, OUT_DT: tl.constexpr, F32_DOT: tl.constexpr, IEEE: tl.constexpr,
                   BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """out[m, n] = sum_k x[m, k] w[n, k] (+ b[n]), fp32 accumulation over K in BLOCK_K steps, rounded once.

    Program ids run M-tiles fastest: the programs that read one weight tile (same N-tile) are adjacent, so the
    weight is fetched from HBM about once and the other M-tiles find it in L2."""
    pid = tl.program_id(0)
    n_m = tl.cdiv(M, BLOCK_M)
    pid_m = pid % n_m
    pid_n = pid // n_m
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    m_ok = offs_m < M
    n_ok = offs_n < N
    x_ptrs = x_ptr + offs_m.to(tl.int64)[:, None] * stride_xm + offs_k[None, :]
    w_ptrs = w_ptr + offs_n.to(tl.int64)[None, :] * stride_wn + offs_k[:, None] * stride_wk  # (BLOCK_K, BLOCK_N)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        k_ok = offs_k < K - k0
        a = tl.load(x_ptrs, mask=m_ok[:, None] & k_ok[None, :], other=0.0)
        b = tl.load(w_ptrs, mask=k_ok[:, None] & n_ok[None, :], other=0.0)
        if F32_DOT:  # the interpreter's bf16 dot is wrong: exact fp32 products of the 16-bit operands instead
            acc = tl.dot(a.to(tl.float32), b.to(tl.float32), acc)
        elif IEEE:  # fp32 operands: full fp32 products, not TF32
            acc = tl.dot(a, b, acc, input_precision="ieee")
        else:
            acc = tl.dot(a, b, acc)
        x_ptrs += BLOCK_K
        w_ptrs += BLOCK_K * stride_wk
    if HAS_BIAS:
        acc += tl.load(b_ptr + offs_n, mask=n_ok, other=0.0).to(tl.float32)
    out = round_to(acc, OUT_DT).to(OUT_DT)  # round_to: round-to-nearest also under the interpreter
    o_ptrs = out_ptr + offs_m.to(tl.int64)[:, None] * stride_om + offs_n[None, :]
    tl.store(o_ptrs, out, mask=m_ok[:, None] & n_ok[None, :])


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, *,
           config: LinearConfig = CONFIG) -> torch.Tensor:
    """F.linear(x, weight, bias) with a batch-invariant kernel: x (..., K), weight (N, K) (nn.Linear layout), bias (N,)
    or None -> (..., N) in x's dtype. bf16/fp16 (fp32 also accepted: IEEE fp32 products, no TF32).

    Row i of the result is bit-identical to linear(x[i:i+1])[0] for every M (see CONFIG). The accumulation is fp32,
    the bias is added in fp32 before the one final rounding. `config` exists for benchmarks only."""
    if weight.dim() != 2 or x.shape[-1] != weight.shape[1]:
        raise ValueError(f"linear: x {tuple(x.shape)} and weight {tuple(weight.shape)} do not match (weight is (N, K))")
    if x.dtype not in _TL_DTYPES or weight.dtype != x.dtype or (bias is not None and bias.dtype != x.dtype):
        raise ValueError(f"linear: x, weight and bias must share one of bf16/fp16/fp32, got {x.dtype}, {weight.dtype}"
                         f"{'' if bias is None else ', ' + str(bias.dtype)}")
    N, K = weight.shape
    lead = x.shape[:-1]
    x2 = x.reshape(-1, K).contiguous()
    M = x2.shape[0]
    out = torch.empty((M, N), dtype=x.dtype, device=x.device)
    if M == 0 or N == 0:
        return out.reshape(*lead, N)
    if K == 0:
        out.copy_((bias if bias is not None else torch.zeros(N, dtype=x.dtype, device=x.device)).expand(M, N))
        return out.reshape(*lead, N)
    b = bias.contiguous() if bias is not None else x2  # dummy pointer when there is no bias (never read)
    c = config
    grid = (triton.cdiv(M, c.block_m) * triton.cdiv(N, c.block_n),)
    _linear_kernel[grid](
        x2, weight, b, out, M, N, K, x2.stride(0), weight.stride(0), weight.stride(1), out.stride(0),
        HAS_BIAS=bias is not None, OUT_DT=_TL_DTYPES[x.dtype], F32_DOT=interpreting(), IEEE=x.dtype == torch.float32,
        BLOCK_M=c.block_m, BLOCK_N=c.block_n, BLOCK_K=c.block_k, num_warps=c.num_warps, num_stages=c.num_stages,
    )
    return out.reshape(*lead, N)


@triton.jit(do_not_specialize=["n_rows"])
def _rms_norm_kernel(x_ptr, w_ptr, out_ptr, n_rows, D, stride_xr, inv_d, eps,
                     IN_DT: tl.constexpr, OUT_DT: tl.constexpr, BLOCK: tl.constexpr):
    """One row per program: h = round_IN(x * rsqrt(sum(x^2) * (1/D) + eps)); out = round_OUT(w * h), all in fp32."""
    row = tl.program_id(0).to(tl.int64)
    offs = tl.arange(0, BLOCK)
    ok = offs < D
    x = tl.load(x_ptr + row * stride_xr + offs, mask=ok, other=0.0).to(tl.float32)
    var = tl.sum(x * x, axis=0) * inv_d
    h = round_to(x * tl.math.rsqrt(var + eps), IN_DT)
    w = tl.load(w_ptr + offs, mask=ok, other=0.0).to(tl.float32)
    y = round_to(w * h, OUT_DT).to(OUT_DT)
    tl.store(out_ptr + row * D + offs, y, mask=ok)


_RMS_WARPS = 4


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """HF's Qwen2RMSNorm / LlamaRMSNorm / Qwen3RMSNorm forward, batch-invariant: x (..., D), weight (D,) ->
    (..., D) in promote(x.dtype, weight.dtype), as `weight * (x.float() * rsqrt(mean(x.float()^2) + eps)).to(x.dtype)`.

    One program per row and one block over D, so each row's sum of squares is one fixed reduction tree whatever
    the number of rows. Close to torch's result, not bit-identical to it (another summation order; torch's mean
    divides, this multiplies by 1/D as torch's CUDA mean does)."""
    D = x.shape[-1]
    if weight.shape != (D,):
        raise ValueError(f"rms_norm: weight {tuple(weight.shape)} does not match hidden size {D}")
    if x.dtype not in _TL_DTYPES or weight.dtype not in _TL_DTYPES:
        raise ValueError(f"rms_norm: x and weight must be bf16/fp16/fp32, got {x.dtype}, {weight.dtype}")
    out_dtype = torch.promote_types(x.dtype, weight.dtype)
    x2 = x.reshape(-1, D)
    if x2.stride(-1) != 1:
        x2 = x2.contiguous()
    R = x2.shape[0]
    out = torch.empty((R, D), dtype=out_dtype, device=x.device)
    if R and D:
        _rms_norm_kernel[(R,)](
            x2, weight.contiguous(), out, R, D, x2.stride(0), 1.0 / D, float(eps),
            IN_DT=_TL_DTYPES[x.dtype], OUT_DT=_TL_DTYPES[out_dtype], BLOCK=next_pow2(D), num_warps=_RMS_WARPS,
        )
    return out.reshape(x.shape)


def rms_norm_ref(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """The torch formula rms_norm implements (HF's Qwen2RMSNorm.forward)."""
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * h.to(x.dtype)


# ---------------------------------------------------------------------------------------------- model patching

_STATE = threading.local()  # .active: the set of model keys whose patched modules route to the kernels


def _rms_eps(m: torch.nn.Module):
    for name in ("variance_epsilon", "eps"):
        v = getattr(m, name, None)
        if isinstance(v, (int, float)):
            return float(v)
    return None


def _is_rms_norm(m: torch.nn.Module) -> bool:
    return type(m).__name__.endswith("RMSNorm")


def _check_rms_norm(name: str, m: torch.nn.Module) -> float:
    """The module's eps, after checking on a random input that its forward is the formula of rms_norm (HF's
    Qwen2/Llama/Qwen3 RMSNorm); other variants (Gemma's (1 + weight), gated norms) raise."""
    eps = _rms_eps(m)
    w = getattr(m, "weight", None)
    if eps is None or not isinstance(w, torch.Tensor) or w.dim() != 1:
        raise ValueError(f"invariant_decode: {name} ({type(m).__name__}) has no 1-D weight and eps/variance_epsilon; "
                         "only the Qwen2/Llama/Qwen3 RMSNorm formula is supported")
    if w.device.type == "meta":
        return eps
    gen = torch.Generator(device=w.device).manual_seed(0)
    with torch.no_grad():
        x = torch.randn(3, w.shape[0], generator=gen, device=w.device).to(w.dtype)
        try:
            got = m.forward(x)
        except Exception as e:  # another signature (e.g. a gated norm)
            raise ValueError(f"invariant_decode: {name} ({type(m).__name__}) is not a plain RMSNorm: {e}") from e
        ref = rms_norm_ref(x, w, eps)
        ok = isinstance(got, torch.Tensor) and got.shape == ref.shape and got.dtype == ref.dtype and \
            torch.allclose(got.float(), ref.float(), rtol=2e-2, atol=1e-3)
    if not ok:
        raise ValueError(f"invariant_decode: {name} ({type(m).__name__}) computes another RMSNorm formula than "
                         "weight * (x * rsqrt(mean(x^2) + eps)) (e.g. Gemma's (1 + weight)); not supported")
    return eps


def _active(m) -> bool:
    return m._bi_key in getattr(_STATE, "active", ())


def _linear_forward(self, input):
    if _active(self) and can_run(input):
        return linear(input, self.weight, self.bias)
    return self._bi_orig_forward(input)


def _rms_forward(self, hidden_states):
    if _active(self) and can_run(hidden_states):
        return rms_norm(hidden_states, self.weight, self._bi_eps)
    return self._bi_orig_forward(hidden_states)


def patch_invariant(model: torch.nn.Module) -> list[torch.nn.Module]:
    """Idempotently route every nn.Linear and RMSNorm module of `model` through `_linear_forward` / `_rms_forward`
    (the original forward unless invariant_decode(model) is active in this thread). Checks every RMSNorm's formula
    on a random input (a host sync): call it, or enter invariant_decode once, before capturing a CUDA graph."""
    mods = getattr(model, "_bi_modules", None)
    if mods is not None:
        return mods
    key = object()
    found = []
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.Linear):
            if not isinstance(m.weight, torch.Tensor) or m.weight.dtype not in _TL_DTYPES:
                raise ValueError(f"invariant_decode: {name} ({type(m).__name__}) has a {getattr(m.weight, 'dtype', None)}"
                                 " weight; only bf16/fp16/fp32 Linear layers are supported")
            found.append((m, _linear_forward, None))
        elif _is_rms_norm(m):
            found.append((m, _rms_forward, _check_rms_norm(name, m)))
    for m, fwd, eps in found:  # patch only once everything checked out
        if hasattr(m, "_bi_orig_forward"):
            raise ValueError(f"invariant_decode: module {type(m).__name__} is already patched by another model")
        m._bi_key = key
        m._bi_eps = eps
        m._bi_orig_forward = m.forward
        m.forward = types.MethodType(fwd, m)
    model._bi_key = key
    model._bi_modules = [m for m, _, _ in found]
    return model._bi_modules


def _model_device(model) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


@contextlib.contextmanager
def invariant_decode(model: torch.nn.Module, force: bool = False):
    """While active in this thread, every nn.Linear of `model` runs `linear` and every RMSNorm runs `rms_norm`, so
    each row's outputs are bit-identical whatever the batch size and the other rows (attention, embeddings and the
    elementwise ops are row-local already). Matmuls outside nn.Linear modules are not covered: Qwen3-MoE's router
    and fused experts keep torch's kernels.

    Engages only where the Triton kernels can run: a model on CUDA. On a CPU model the context does nothing and
    torch's CPU kernels run (force=True engages it under the Triton interpreter, TRITON_INTERPRET=1, for tests;
    forcing without CUDA or the interpreter raises). Inputs that reach a patched module off CUDA outside the
    interpreter take the original forward. Outside the context the original forwards run unchanged.

    Yields whether it engaged. The first entry patches the model (idempotent; see patch_invariant). No host sync
    per call: the kernels can be captured in CUDA graphs."""
    dev = _model_device(model)
    engage = dev.type == "cuda" or (force and interpreting())
    if force and not engage:
        raise RuntimeError("invariant_decode(force=True) needs a CUDA model or TRITON_INTERPRET=1")
    if not engage:
        yield False
        return
    patch_invariant(model)
    active = getattr(_STATE, "active", None)
    if active is None:
        active = _STATE.active = set()
    added = model._bi_key not in active
    active.add(model._bi_key)
    try:
        yield True
    finally:
        if added:
            active.discard(model._bi_key)
