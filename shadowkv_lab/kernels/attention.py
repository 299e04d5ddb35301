"""Decode attention (one new token, GQA) over several KV segments without concatenating them: split-K
("flash-decoding"): each program reduces one slice of one segment for one KV head and all its G query heads
(online softmax), a second kernel merges the partials. Segments: outliers, local window, selected rows, generated
tokens -- any (BH, N, d) views with unit stride on d.

Shapes: q (BH, G, d), BH = batch * KV heads rows, G query heads per KV head; a segment is (k, v) or (k, v, lengths)
with k, v (BH, N_i, d) and lengths None or a (BH,) integer tensor on q's device: row bh's valid entries are its
first lengths[bh] of that segment (0 allowed: the segment adds nothing to that row), the rest is padding of a stack
of rows. Padding is never loaded (masked loads, logits -inf), so it may hold anything, NaN included.

Batch invariance (a row's output is bit for bit the same alone, BH = its heads and tensors cut to its lengths, or in
any stack, any padding, any batch mates): the split plan depends on constants only. Every segment is cut into splits
of SPLIT_N tokens starting at token 0, so a row's own tokens fall into the same splits, reduced block by block in
the same order, whatever N_i, BH or the GPU; an adaptive plan (splits chosen from BH and the SM count to fill the
GPU) would regroup a row's tokens with the batch size. Splits past a row's length store m = -inf, l = 0, acc = 0;
the merge gives them weight exactly 0 (never exp2(-inf - -inf)), so they add +0.0 and leave every sum unchanged.
The merge adds partials in a fixed order (segment by segment, split by split), one program per row.

CUDA graphs: lengths are read by the kernels only (no host sync); the grid, buffers and output shape follow the
input shapes alone, so a captured step replays correctly as lengths change on the device.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .common import interpreting, mma, next_pow2
from .scoring import _check_lengths

LOG2E = 1.4426950408889634

# Tokens per split. Sized for the longest rows: a 16k-token full-attention row of a model with 2 KV heads gives
# 2 * 16384 / 256 = 128 programs, about one wave of an H200's 132 SMs (512 would leave half of them idle), and 64
# partials per row-head (8 KB each at G <= 16, d = 128: ~6% of the 8 MB of K/V the row reads); 128 would double the
# partials and the merge's serial loop for no more parallelism at that size. Many-row batches fill the GPU anyway.
SPLIT_N = 256


@triton.jit(do_not_specialize=["N", "RAGGED", "s_base", "S"])
def _attn_part(q_ptr, k_ptr, v_ptr, len_ptr, po_ptr, pm_ptr, pl_ptr, N, RAGGED, split, s_base, S, qk_scale,
               stride_kb, stride_kn, stride_vb, stride_vn,
               G: tl.constexpr, GP: tl.constexpr, D: tl.constexpr, BN: tl.constexpr, F32_DOT: tl.constexpr):
    # RAGGED is a runtime flag, not a constexpr, and a segment without lengths gets an int32 placeholder: a row alone
    # and in a stack (int32 lengths) run one compiled kernel; the reduction below is the same code in any variant.
    bh = tl.program_id(0).to(tl.int64)
    sp = tl.program_id(1)
    gg = tl.arange(0, GP)
    dd = tl.arange(0, D)
    n_valid = N
    if RAGGED != 0:
        n_valid = tl.maximum(tl.minimum(tl.load(len_ptr + bh).to(tl.int32), N), 0)
    q = tl.load(q_ptr + bh * G * D + gg[:, None] * D + dd[None, :], mask=gg[:, None] < G, other=0.0)
    m = tl.full((GP,), float("-inf"), tl.float32)
    l = tl.zeros((GP,), tl.float32)
    acc = tl.zeros((GP, D), tl.float32)
    start = sp * split
    end = tl.minimum(start + split, n_valid)
    for n0 in range(start, end, BN):  # every block holds >= 1 valid entry, so m_new is finite
        n = n0 + tl.arange(0, BN)
        nm = n < end
        k = tl.load(k_ptr + bh * stride_kb + n[:, None] * stride_kn + dd[None, :], mask=nm[:, None], other=0.0)
        v = tl.load(v_ptr + bh * stride_vb + n[:, None] * stride_vn + dd[None, :], mask=nm[:, None], other=0.0)
        s = mma(q, tl.trans(k), F32_DOT) * qk_scale
        s = tl.where(nm[None, :], s, float("-inf"))
        m_new = tl.maximum(m, tl.max(s, 1))
        alpha = tl.exp2(m - m_new)
        p = tl.exp2(s - m_new[:, None])
        l = l * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + mma(p.to(v.dtype), v, F32_DOT)
        m = m_new
    o = bh * S + s_base + sp
    tl.store(po_ptr + o * GP * D + gg[:, None] * D + dd[None, :], acc)
    tl.store(pm_ptr + o * GP + gg, m)
    tl.store(pl_ptr + o * GP + gg, l)


@triton.jit(do_not_specialize=["S"])
def _attn_merge(po_ptr, pm_ptr, pl_ptr, out_ptr, S, G: tl.constexpr, GP: tl.constexpr, D: tl.constexpr):
    bh = tl.program_id(0).to(tl.int64)
    gg = tl.arange(0, GP)
    dd = tl.arange(0, D)
    mx = tl.full((GP,), float("-inf"), tl.float32)
    for s in range(S):
        mx = tl.maximum(mx, tl.load(pm_ptr + (bh * S + s) * GP + gg))
    mx = tl.where(mx == float("-inf"), 0.0, mx)  # a row with no entry: no -inf - -inf below
    l = tl.zeros((GP,), tl.float32)
    acc = tl.zeros((GP, D), tl.float32)
    for s in range(S):
        o = bh * S + s
        ms = tl.load(pm_ptr + o * GP + gg)
        w = tl.where(ms == float("-inf"), 0.0, tl.exp2(ms - mx))  # an empty partial weighs exactly 0
        l += w * tl.load(pl_ptr + o * GP + gg)
        acc += w[:, None] * tl.load(po_ptr + o * GP * D + gg[:, None] * D + dd[None, :])
    out = tl.where(l[:, None] > 0, acc / tl.where(l > 0, l, 1.0)[:, None], 0.0)  # a row with no entry at all: 0
    tl.store(out_ptr + bh * G * D + gg[:, None] * D + dd[None, :], out.to(out_ptr.dtype.element_ty), mask=gg[:, None] < G)


def _unpack(seg, BH: int, device):
    """(k, v) or (k, v, lengths) -> (k, v, lengths or None); checks shape, dtype and device only (no sync)."""
    if len(seg) == 2:
        (k, v), lengths = seg, None
    elif len(seg) == 3:
        k, v, lengths = seg
    else:
        raise ValueError(f"a segment is (k, v) or (k, v, lengths), got {len(seg)} items")
    _check_lengths(lengths, BH, device)
    return k, v, lengths


def decode_attention(q: torch.Tensor, segments: list[tuple], scaling: float, block_n: int = 64,
                     split_n: int = SPLIT_N) -> torch.Tensor:
    """q (BH, G, d); segments [(k, v) or (k, v, lengths)], k, v (BH, N_i, d) with unit stride on d, lengths None or
    (BH,) int32 / int64 on q's device (row bh's valid entries: its first lengths[bh], clamped to 0..N_i)
    -> (BH, G, d) in q's dtype. Exact softmax attention of each query head over the union of all rows' valid
    entries; a row with no valid entry in any segment gets 0.

    Batch-invariant and CUDA-graph safe (module docstring): splits of split_n tokens (a multiple of block_n; any
    fixed value keeps the invariance, SPLIT_N is the tuned one) start at token 0 of every segment."""
    BH, G, D = q.shape
    if split_n <= 0 or split_n % block_n:
        raise ValueError(f"split_n must be a positive multiple of block_n={block_n}, got {split_n}")
    q = q.contiguous()
    plan, S = [], 0
    for seg in segments:
        k, v, lengths = _unpack(seg, BH, q.device)
        N = k.shape[1]
        if N == 0:
            continue
        if k.shape != (BH, N, D) or v.shape != (BH, N, D) or k.stride(2) != 1 or v.stride(2) != 1:
            raise ValueError(f"segment k, v must be ({BH}, N, {D}) with unit stride on d, got {tuple(k.shape)}, "
                             f"{tuple(v.shape)}")
        n_split = triton.cdiv(N, split_n)
        plan.append((k, v, lengths, N, n_split, S))
        S += n_split
    GP = max(16, next_pow2(G))
    po = torch.empty(BH, S, GP, D, dtype=torch.float32, device=q.device)
    pm = torch.empty(BH, S, GP, dtype=torch.float32, device=q.device)
    pl = torch.empty(BH, S, GP, dtype=torch.float32, device=q.device)
    none = torch.empty(1, dtype=torch.int32, device=q.device)  # never read (RAGGED = 0)
    for k, v, lengths, N, n_split, base in plan:
        lens = none if lengths is None else lengths
        _attn_part[(BH, n_split)](q, k, v, lens, po, pm, pl, N, int(lengths is not None), split_n, base, S,
                                  scaling * LOG2E, k.stride(0), k.stride(1), v.stride(0), v.stride(1),
                                  G=G, GP=GP, D=D, BN=block_n, F32_DOT=interpreting(), num_warps=4)
    out = torch.empty_like(q)
    _attn_merge[(BH,)](po, pm, pl, out, S, G=G, GP=GP, D=D, num_warps=4)
    return out


def decode_attention_ref(q, segments, scaling):
    """Reference (cache.layer.attend): fp32 softmax over the concatenated segments; segments as decode_attention,
    with lengths a masked softmax (padding neither read as a value nor weighted; a row with no entry gets 0)."""
    ks, vs, valid = [], [], []
    for seg in segments:
        k, v, lengths = _unpack(seg, q.shape[0], q.device)
        ok = torch.ones(k.shape[:2], dtype=torch.bool, device=k.device)
        if lengths is not None:
            ok = torch.arange(k.shape[1], device=k.device)[None, :] < lengths.to(k.device)[:, None]
        ks.append(k.float().masked_fill(~ok[..., None], 0))
        vs.append(v.float().masked_fill(~ok[..., None], 0))
        valid.append(ok)
    k, v, ok = torch.cat(ks, 1), torch.cat(vs, 1), torch.cat(valid, 1)
    logits = (torch.matmul(q.float(), k.transpose(1, 2)) * scaling).masked_fill(~ok[:, None, :], float("-inf"))
    p = torch.softmax(logits, -1).nan_to_num(0.0)  # all -inf (no entry): NaN -> 0
    return torch.matmul(p, v).to(q.dtype)


__all__ = ["SPLIT_N", "decode_attention", "decode_attention_ref"]
