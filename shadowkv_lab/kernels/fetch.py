"""Gathering the selected rows into the GPU step buffer, with dequantization, key reconstruction and RoPE fused in.

Sources may live in pinned host memory: the kernels read them zero-copy (the GPU dereferences the host pointer
over PCIe, only the bytes of the selected rows travel). ShadowKV's cache-hit policy: `ResidentSet` keeps the
previous step's selected rows resident and lists only the misses, which are the only rows fetched or rebuilt.

Row addressing: row bh = b * H + h of position p lives at src + b*stride_b + h*stride_h + p*stride_p (elements);
this covers head-major stores (H, P, d) and token-major ones (P, H*d) alike.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .common import e4m3_to_f32, fwht_butterfly, host_arg, interpreting, mma, next_pow2, round_to


# ---------------------------------------------------------------------------------------------- cache-hit policy
class ResidentSet:
    """Which prompt position each step-buffer slot holds, per row (BH, K). `update(new)` returns the misses:
    (src_pos, dst_slot, n_miss): rows i < n_miss[bh] must be fetched from position src_pos[bh, i] into slot
    dst_slot[bh, i]; every other slot already holds a selected position. All on the device, no host sync."""

    def __init__(self, BH: int, K: int, device):
        self.slot_pos = torch.full((BH, K), -1, dtype=torch.long, device=device)
        self.fetched = torch.zeros((), dtype=torch.long, device=device)  # rows fetched so far
        self.requested = torch.zeros((), dtype=torch.long, device=device)  # rows selected so far

    def update(self, new_pos: torch.Tensor):
        old = self.slot_pos
        K = old.shape[1]
        s_old, order = old.sort(-1)
        j = torch.searchsorted(s_old, new_pos).clamp_(max=K - 1)
        hit = torch.gather(s_old, 1, j) == new_pos  # (BH, K) new position already resident
        s_new = new_pos.sort(-1).values
        j2 = torch.searchsorted(s_new, old).clamp_(max=K - 1)
        keep = torch.gather(s_new, 1, j2) == old  # slot still selected
        miss_idx = torch.sort(hit.to(torch.int8), dim=-1, stable=True).indices  # misses first
        free = torch.sort(keep.to(torch.int8), dim=-1, stable=True).indices  # freed slots first
        n_miss = (~hit).sum(-1)
        src = torch.gather(new_pos, 1, miss_idx)
        first = torch.arange(K, device=old.device) < n_miss[:, None]
        old.scatter_(1, free, torch.where(first, src, torch.gather(old, 1, free)))
        self.fetched += n_miss.sum()
        self.requested += new_pos.numel()
        return src, free, n_miss

    def hit_rate(self) -> float:
        return 1.0 - float(self.fetched) / max(1, float(self.requested))


# ---------------------------------------------------------------------------------------------- row gather
GATHER_BLOCK, GATHER_WARPS = 32, 4  # rows per program, warps per program (benchmarks/bench_decode_step.py sweeps them)
# The gathers launch region-major: program_id(0) walks one row's (one sequence's, or one head of it) selected positions
# and program_id(1) the rows, so the programs in flight at once read from a few rows' regions of the store. A zero-copy
# read needs its host page translated, and the GPU's reach is a few hundred MiB: on an H100, random 128-byte rows came
# at 361 M rows/s from a 256 MiB span and 34 M rows/s from 8 GiB; 256 rows of 4,096 positions each over 32 MiB regions
# came at 37 M rows/s launched row-major (program_id(0) = the row) and 313 M rows/s region-major
# (benchmarks/bench_zero_copy.py). The launch order changes no value: every program writes its own slots.
MAX_GRID_Y = 65535  # CUDA's limit on the grid's second dimension


def _region_major_grid(rows: int, blocks: int, *rest: int) -> tuple:
    if rows > MAX_GRID_Y:
        raise ValueError(f"{rows} rows (batch x heads) in one gather: at most {MAX_GRID_Y} (the CUDA grid's y limit)")
    return (blocks, rows, *rest)


@triton.jit
def _rope_halves(x1, x2, c, s, DT: tl.constexpr):
    """rotate_half RoPE rounded to the model dtype DT after every operation, exactly as HF's x*cos + rot(x)*sin
    in that dtype: (x1, x2) -> (x1 c - x2 s, x2 c + x1 s)."""
    x1 = round_to(x1, DT)
    x2 = round_to(x2, DT)
    a = round_to(x1 * c, DT) - round_to(x2 * s, DT)
    b = round_to(x2 * c, DT) + round_to(x1 * s, DT)
    return round_to(a, DT), round_to(b, DT)


@triton.jit
def _gather_rows(src_ptr, idx_ptr, rpos_ptr, slot_ptr, n_ptr, out_ptr, tab_ptr, K, H,
                 stride_b, stride_h, stride_p, stride_ob, stride_ok,
                 D: tl.constexpr, FMT: tl.constexpr, ROPE: tl.constexpr, USE_N: tl.constexpr, SLOTS: tl.constexpr,
                 BN: tl.constexpr):
    """out[bh, slot[i]] = rope(dequant(src row idx[bh, i]), rpos[bh, i]) for i < n[bh] (or K); slot[i] = i
    without SLOTS.
    FMT 0: native float rows, 1: fp8 e4m3 bytes. One load per row; RoPE splits it into its two halves.
    Grid (blocks of K, BH): region-major, see _region_major_grid."""
    bh = tl.program_id(1).to(tl.int64)
    i = tl.program_id(0) * BN + tl.arange(0, BN)
    lim = tl.load(n_ptr + bh) if USE_N else K
    mask = i < lim
    idx = tl.load(idx_ptr + bh * K + i, mask=mask, other=0)
    slot = tl.load(slot_ptr + bh * K + i, mask=mask, other=0) if SLOTS else i
    dd = tl.arange(0, D)
    # one load per whole row: zero-copy PCIe reads are limited by the number of requests, not their size
    src = src_ptr + (bh // H) * stride_b + (bh % H) * stride_h + idx[:, None] * stride_p + dd[None, :]
    x = tl.load(src, mask=mask[:, None], other=0)
    if FMT == 1:
        x = e4m3_to_f32(x)
    x = x.to(tl.float32)
    if ROPE:
        HALF: tl.constexpr = D // 2
        hh = tl.arange(0, HALF)
        rp = tl.load(rpos_ptr + bh * K + i, mask=mask, other=0)
        t = tab_ptr + rp[:, None] * D + hh[None, :]
        c = tl.load(t, mask=mask[:, None], other=0.0).to(tl.float32)
        s = tl.load(t + HALF, mask=mask[:, None], other=0.0).to(tl.float32)
        x1, x2 = tl.split(tl.permute(tl.reshape(x, (BN, 2, HALF)), (0, 2, 1)))
        x1, x2 = _rope_halves(x1, x2, c, s, out_ptr.dtype.element_ty)
        x = tl.reshape(tl.permute(tl.join(x1, x2), (0, 2, 1)), (BN, D))
    dst = out_ptr + bh * stride_ob + slot[:, None] * stride_ok + dd[None, :]
    tl.store(dst, x.to(out_ptr.dtype.element_ty), mask=mask[:, None])


def gather_rows(src: torch.Tensor, strides: tuple[int, int, int], H: int, idx: torch.Tensor, out: torch.Tensor,
                slots: torch.Tensor | None = None, n: torch.Tensor | None = None, fmt: int = 0,
                rope_table: torch.Tensor | None = None, rope_pos: torch.Tensor | None = None, block: int | None = None,
                num_warps: int | None = None) -> None:
    """Write rows idx (BH, K) of `src` (any device; pinned host memory is read zero-copy) into out (BH, S, D)
    at `slots` (default: slot i), only the first n[bh] rows when n is given; fp8 decoded; RoPE at rope_pos
    (default idx) when rope_table is given."""
    BH, K = idx.shape
    D = out.shape[-1]
    block, num_warps = block or GATHER_BLOCK, num_warps or GATHER_WARPS
    idx = idx.contiguous()
    rpos = (rope_pos if rope_pos is not None else idx).contiguous()
    tab = rope_table if rope_table is not None else out
    # Without slots, slot i is i, computed in the kernel: materialising arange(K) for every call cost two kernel
    # launches per layer and method group.
    _gather_rows[_region_major_grid(BH, triton.cdiv(K, block))](
        host_arg(src), idx, rpos, slots.contiguous() if slots is not None else idx, n if n is not None else idx, out,
        tab, K, H, *strides, out.stride(0), out.stride(1), D=D, FMT=fmt, ROPE=rope_table is not None,
        USE_N=n is not None, SLOTS=slots is not None, BN=block, num_warps=num_warps)


def gather_rows_ref(src, strides, H, idx, out, slots=None, n=None, fmt=0, rope_table=None, rope_pos=None):
    """Torch reference of gather_rows (dequantize in fp32, round to out's dtype, RoPE in that dtype like HF)."""
    from .common import torch_rope

    BH, K = idx.shape
    D = out.shape[-1]
    flat = src.reshape(-1)
    sb, sh, sp = strides
    bh = torch.arange(BH, device=idx.device)[:, None]
    off = ((bh // H) * sb + (bh % H) * sh + idx * sp)[..., None] + torch.arange(D, device=idx.device)
    rows = flat[off.to(flat.device)].to(idx.device)
    rows = (rows.view(torch.float8_e4m3fn).float() if fmt == 1 else rows.float()).to(out.dtype)
    if rope_table is not None:
        rows = torch_rope(rows, rope_pos if rope_pos is not None else idx, rope_table)
    slots = slots if slots is not None else torch.arange(K, device=idx.device).expand(BH, K)
    valid = torch.arange(K, device=idx.device)[None] < (n[:, None] if n is not None else K)
    for r in range(BH):
        out[r, slots[r][valid[r]]] = rows[r][valid[r]]


# ---------------------------------------------------------------------------------------------- raw row copy
_BITS = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


@triton.jit
def _copy_rows(src_ptr, rows_ptr, out_ptr, M, W, row_stride, BN: tl.constexpr, BW: tl.constexpr):
    """out[i, :W] = src[rows[i] * row_stride + (0..W)] for i < M: a bit copy (integer lanes, no float conversion)."""
    i = tl.program_id(0) * BN + tl.arange(0, BN)
    m = i < M
    r = tl.load(rows_ptr + i, mask=m, other=0).to(tl.int64)
    w = tl.arange(0, BW)
    mask = m[:, None] & (w[None, :] < W)
    x = tl.load(src_ptr + r[:, None] * row_stride + w[None, :], mask=mask, other=0)
    tl.store(out_ptr + i.to(tl.int64)[:, None] * W + w[None, :], x, mask=mask)


def copy_rows(src: torch.Tensor, rows: torch.Tensor, block: int = 32) -> torch.Tensor:
    """src (N, W) with unit column stride (any device; pinned host memory is read zero-copy, so only the selected
    rows cross PCIe and the host never waits), rows (M,) long on the compute device -> src[rows] (M, W) there, bit
    for bit. No host synchronisation: the runner's stacked decode step gathers every method's rows this way."""
    if src.dim() != 2 or src.stride(1) != 1:
        raise ValueError(f"copy_rows needs a 2-D source with unit column stride, got shape {tuple(src.shape)} "
                         f"strides {src.stride()}")
    lanes = _BITS[src.element_size()]
    out = torch.empty(rows.shape[0], src.shape[1], dtype=src.dtype, device=rows.device)
    M, W = out.shape
    if M and W:
        _copy_rows[(triton.cdiv(M, block),)](host_arg(src.view(lanes)), rows.contiguous(), out.view(lanes), M, W,
                                             src.stride(0), BN=block, BW=next_pow2(W), num_warps=4)
    return out


def copy_rows_ref(src: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    return src[rows.to(src.device)].to(rows.device)


# ---------------------------------------------------------------------------------------------- HIGGS token rows
@triton.jit
def _higgs_rows(codes_ptr, scales_ptr, grid_ptr, pos_ptr, n_ptr, out_ptr, CAP,
                stride_cb, stride_cp, stride_sb, stride_sp, stride_ob, stride_ou,
                GRP: tl.constexpr, P: tl.constexpr, LOG2G: tl.constexpr, BN: tl.constexpr):
    """Dequantize HIGGS rows (codes (., P_rows, C/p) uint8, scales (., P_rows, C/GRP) fp32) of positions
    pos[b, u], u < n[b], into out[b, u, :] (model dtype) bit for bit as HiggsQuantizer.dequantize + the cast to the
    model dtype: fwht(grid[code] * s) / GRP per group, with the reference's butterfly order (a tensor-core product
    sums in another order; where large Hadamard terms cancel, as in the small channels of keys with massive
    channels, that flips the bf16 rounding of up to 14% of the elements, 1 ulp = 2.0 on a massive channel).
    One program: BN rows x one Hadamard group (program_id 2); grid (blocks of CAP, B, groups): region-major, see
    _region_major_grid."""
    b = tl.program_id(1).to(tl.int64)
    u = tl.program_id(0) * BN + tl.arange(0, BN)
    j = tl.program_id(2)
    mask = u < tl.load(n_ptr + b)
    pos = tl.load(pos_ptr + b * CAP + u, mask=mask, other=0)
    cc = tl.arange(0, GRP)
    code = tl.load(codes_ptr + b * stride_cb + pos[:, None] * stride_cp + (j * (GRP // P) + cc // P)[None, :],
                   mask=mask[:, None], other=0)
    y = tl.load(grid_ptr + code.to(tl.int32) * P + (cc % P)[None, :])
    s = tl.load(scales_ptr + b * stride_sb + pos * stride_sp + j, mask=mask, other=0.0).to(tl.float32)
    x = fwht_butterfly(y * s[:, None], BN, GRP, LOG2G) * (1.0 / GRP)  # GRP a power of two: exact, as / GRP
    x = round_to(x, out_ptr.dtype.element_ty)
    tl.store(out_ptr + b * stride_ob + u[:, None] * stride_ou + (j * GRP + cc)[None, :],
             x.to(out_ptr.dtype.element_ty), mask=mask[:, None])


def higgs_rows(codes: torch.Tensor, scales: torch.Tensor, grid: torch.Tensor, group: int, pos: torch.Tensor,
               n: torch.Tensor, out: torch.Tensor, block: int = 16) -> None:
    """codes (B, P, C/p) uint8, scales (B, P, C/group) fp32 (any device, pinned host read zero-copy), grid (n, p);
    pos (B, CAP) long, n (B,) -> out (B, CAP, C) rows u < n[b] dequantized."""
    B, CAP = pos.shape
    C = out.shape[-1]
    p = grid.shape[1]
    if group & (group - 1) or group < 2:
        raise ValueError(f"Hadamard group {group} must be a power of two")
    # enable_fp_fusion=False: grid * s and the butterfly's sums round exactly as the torch reference (no FMA)
    _higgs_rows[_region_major_grid(B, triton.cdiv(CAP, block), C // group)](
        host_arg(codes), host_arg(scales), grid, pos, n, out, CAP, codes.stride(0), codes.stride(1), scales.stride(0),
        scales.stride(1), out.stride(0), out.stride(1), GRP=group, P=p, LOG2G=group.bit_length() - 1, BN=block,
        num_warps=8, enable_fp_fusion=False)


def higgs_rows_ref(codes, scales, grid, group, pos, n, out):
    from .common import hadamard

    B, CAP = pos.shape
    C = out.shape[-1]
    p = grid.shape[1]
    Hm = hadamard(group, out.device)
    for b in range(B):
        k = int(n[b])
        cb = codes[b][pos[b, :k].to(codes.device)].to(out.device)
        sc = scales[b][pos[b, :k].to(scales.device)].to(out.device).float()
        y = grid[cb.long()].reshape(k, C // group, group) * sc[..., None]
        out[b, :k] = ((y @ Hm) / group).reshape(k, C).to(out.dtype)


def union_rows(pos: torch.Tensor, n: torch.Tensor | None, H: int):
    """Per sequence, the distinct positions among its H rows' first n[bh] entries of pos (BH, K).
    -> (uniq (B, H*K) long, n_uniq (B,), inverse (BH, K) index into uniq; garbage past n). No host sync."""
    BH, K = pos.shape
    B = BH // H
    big = torch.iinfo(torch.long).max
    p = pos if n is None else torch.where(torch.arange(K, device=pos.device) < n[:, None], pos, big)
    flat = p.reshape(B, H * K)
    srt, order = flat.sort(-1)
    first = torch.ones_like(srt, dtype=torch.bool)
    first[:, 1:] = srt[:, 1:] != srt[:, :-1]
    first &= srt != big
    uid = torch.cumsum(first, -1) - 1
    uniq = torch.zeros_like(srt)
    uniq.scatter_(1, torch.where(first, uid, H * K - 1), torch.where(first, srt, 0))
    inv = torch.empty_like(uid).scatter_(1, order, uid.clamp_(min=0))
    return uniq, first.sum(-1), inv.view(BH, K)


# ---------------------------------------------------------------------------------------------- low-rank keys
@triton.jit
def _lowrank_rows(u_ptr, sv_ptr, pos_ptr, slot_ptr, n_ptr, out_ptr, tab_ptr, K, H, R,
                  stride_ub, stride_up, stride_ur, stride_ob, stride_ok,
                  D: tl.constexpr, USE_N: tl.constexpr, SLOTS: tl.constexpr, BN: tl.constexpr, BR: tl.constexpr,
                  F32_DOT: tl.constexpr):
    """out[bh, slot[i]] = rope(U[b, pos] @ SV[b, h], pos) in bf16, rows i < n[bh]: ShadowKV's key rebuild (slot[i] = i
    without SLOTS)."""
    bh = tl.program_id(0).to(tl.int64)
    i = tl.program_id(1) * BN + tl.arange(0, BN)
    lim = tl.load(n_ptr + bh) if USE_N else K
    mask = i < lim
    pos = tl.load(pos_ptr + bh * K + i, mask=mask, other=0)
    slot = tl.load(slot_ptr + bh * K + i, mask=mask, other=0) if SLOTS else i
    HALF: tl.constexpr = D // 2
    dd = tl.arange(0, HALF)
    rr = tl.arange(0, BR)
    acc1 = tl.zeros((BN, HALF), dtype=tl.float32)
    acc2 = tl.zeros((BN, HALF), dtype=tl.float32)
    sv = sv_ptr + bh * R * D
    for r0 in range(0, R, BR):
        rm = (r0 + rr) < R
        u = tl.load(u_ptr + (bh // H) * stride_ub + pos[:, None] * stride_up + (r0 + rr)[None, :] * stride_ur,
                    mask=mask[:, None] & rm[None, :], other=0.0)
        s1 = tl.load(sv + (r0 + rr)[:, None] * D + dd[None, :], mask=rm[:, None], other=0.0)
        s2 = tl.load(sv + (r0 + rr)[:, None] * D + HALF + dd[None, :], mask=rm[:, None], other=0.0)
        acc1 += mma(u, s1, F32_DOT)
        acc2 += mma(u, s2, F32_DOT)
    x1 = acc1.to(out_ptr.dtype.element_ty).to(tl.float32)  # the reference's bmm output is in the model dtype
    x2 = acc2.to(out_ptr.dtype.element_ty).to(tl.float32)
    t = tab_ptr + pos[:, None] * D + dd[None, :]
    c = tl.load(t, mask=mask[:, None], other=0.0).to(tl.float32)
    s = tl.load(t + HALF, mask=mask[:, None], other=0.0).to(tl.float32)
    x1, x2 = _rope_halves(x1, x2, c, s, out_ptr.dtype.element_ty)
    dst = out_ptr + bh * stride_ob + slot[:, None] * stride_ok + dd[None, :]
    tl.store(dst, x1.to(out_ptr.dtype.element_ty), mask=mask[:, None])
    tl.store(dst + HALF, x2.to(out_ptr.dtype.element_ty), mask=mask[:, None])


def lowrank_rows(U: torch.Tensor, SV: torch.Tensor, pos: torch.Tensor, out: torch.Tensor, rope_table: torch.Tensor,
                 slots: torch.Tensor | None = None, n: torch.Tensor | None = None, block: int = 32) -> None:
    """U (B, P, r) bf16 (any strides: the cache's U is column-major), SV (B*H, r, d) bf16 contiguous, pos (BH, K) -> out (BH, S, d) post-RoPE keys at slots."""
    BH, K = pos.shape
    R, D = SV.shape[-2:]
    H = BH // U.shape[0]
    pos = pos.contiguous()
    _lowrank_rows[(BH, triton.cdiv(K, block))](
        U, SV, pos, slots.contiguous() if slots is not None else pos, n if n is not None else pos, out, rope_table, K,
        H, R, U.stride(0), U.stride(1), U.stride(2), out.stride(0), out.stride(1), D=D, USE_N=n is not None,
        SLOTS=slots is not None, BN=block, BR=32, F32_DOT=interpreting(), num_warps=4)


def lowrank_rows_ref(U, SV, pos, rope_table):
    from .common import torch_rope

    BH, K = pos.shape
    H = BH // U.shape[0]
    b = torch.arange(BH, device=pos.device) // H
    k_pre = torch.bmm(U[b[:, None], pos], SV)
    return torch_rope(k_pre, pos, rope_table)
