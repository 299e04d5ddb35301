"""Decode attention (one new token, GQA) over several KV segments without concatenating them: split-K
("flash-decoding"): each program reduces one slice of one segment for one KV head and all its G query heads
(online softmax), a second kernel merges the partials. Segments: outliers, local window, selected rows, generated
tokens -- any (BH, N, d) views with unit stride on d.
"""

from __future__ import annotations


import torch
import triton
import triton.language as tl

from .common import interpreting, mma, next_pow2

LOG2E = 1.4426950408889634


@triton.jit
def _attn_part(q_ptr, k_ptr, v_ptr, po_ptr, pm_ptr, pl_ptr, N, split, s_base, S, qk_scale,
               stride_kb, stride_kn, stride_vb, stride_vn,
               G: tl.constexpr, GP: tl.constexpr, D: tl.constexpr, BN: tl.constexpr, F32_DOT: tl.constexpr):
    bh = tl.program_id(0).to(tl.int64)
    sp = tl.program_id(1)
    gg = tl.arange(0, GP)
    dd = tl.arange(0, D)
    q = tl.load(q_ptr + bh * G * D + gg[:, None] * D + dd[None, :], mask=gg[:, None] < G, other=0.0)
    m = tl.full((GP,), float("-inf"), tl.float32)
    l = tl.zeros((GP,), tl.float32)
    acc = tl.zeros((GP, D), tl.float32)
    start = sp * split
    end = tl.minimum(start + split, N)
    for n0 in range(start, end, BN):
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


@triton.jit
def _attn_merge(po_ptr, pm_ptr, pl_ptr, out_ptr, S, G: tl.constexpr, GP: tl.constexpr, D: tl.constexpr):
    bh = tl.program_id(0).to(tl.int64)
    gg = tl.arange(0, GP)
    dd = tl.arange(0, D)
    mx = tl.full((GP,), float("-inf"), tl.float32)
    for s in range(S):
        mx = tl.maximum(mx, tl.load(pm_ptr + (bh * S + s) * GP + gg))
    l = tl.zeros((GP,), tl.float32)
    acc = tl.zeros((GP, D), tl.float32)
    for s in range(S):
        o = bh * S + s
        w = tl.exp2(tl.load(pm_ptr + o * GP + gg) - mx)
        l += w * tl.load(pl_ptr + o * GP + gg)
        acc += w[:, None] * tl.load(po_ptr + o * GP * D + gg[:, None] * D + dd[None, :])
    out = acc / l[:, None]
    tl.store(out_ptr + bh * G * D + gg[:, None] * D + dd[None, :], out.to(out_ptr.dtype.element_ty), mask=gg[:, None] < G)


_SMS: dict = {}


def _n_sms(device) -> int:
    if device.type != "cuda":
        return 4
    if device not in _SMS:
        _SMS[device] = torch.cuda.get_device_properties(device).multi_processor_count
    return _SMS[device]


def decode_attention(q: torch.Tensor, segments: list[tuple[torch.Tensor, torch.Tensor]], scaling: float,
                     block_n: int = 64, splits: int | None = None) -> torch.Tensor:
    """q (BH, G, d); segments [(k, v)] each (BH, N_i, d) with unit stride on d -> (BH, G, d) in q's dtype.
    Exact softmax attention of each query head over the union of all segments."""
    BH, G, D = q.shape
    q = q.contiguous()
    segs = [(k, v) for k, v in segments if k.shape[1] > 0]
    total = sum(k.shape[1] for k, _ in segs)
    target = splits or max(1, 2 * _n_sms(q.device) // BH)  # programs per row over all segments
    plan, S = [], 0
    for k, v in segs:
        N = k.shape[1]
        n_split = max(1, min(triton.cdiv(N, block_n), round(target * N / total)))
        size = triton.cdiv(triton.cdiv(N, n_split), block_n) * block_n
        n_split = triton.cdiv(N, size)
        plan.append((k, v, N, size, n_split, S))
        S += n_split
    GP = max(16, next_pow2(G))
    po = torch.empty(BH, S, GP, D, dtype=torch.float32, device=q.device)
    pm = torch.empty(BH, S, GP, dtype=torch.float32, device=q.device)
    pl = torch.empty(BH, S, GP, dtype=torch.float32, device=q.device)
    for k, v, N, size, n_split, base in plan:
        assert k.stride(2) == 1 and v.stride(2) == 1
        _attn_part[(BH, n_split)](q, k, v, po, pm, pl, N, size, base, S, scaling * LOG2E,
                                  k.stride(0), k.stride(1), v.stride(0), v.stride(1),
                                  G=G, GP=GP, D=D, BN=block_n, F32_DOT=interpreting(), num_warps=4)
    out = torch.empty_like(q)
    _attn_merge[(BH,)](po, pm, pl, out, S, G=G, GP=GP, D=D, num_warps=4)
    return out


def decode_attention_ref(q, segments, scaling):
    """Reference (cache.layer.attend): fp32 softmax over the concatenated segments."""
    k = torch.cat([k for k, _ in segments], 1).float()
    v = torch.cat([v for _, v in segments], 1).float()
    p = torch.softmax(torch.matmul(q.float(), k.transpose(1, 2)) * scaling, -1)
    return torch.matmul(p, v).to(q.dtype)


__all__ = ["decode_attention", "decode_attention_ref"]
