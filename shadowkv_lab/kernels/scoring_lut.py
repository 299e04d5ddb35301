"""Landmark scoring of HIGGS landmarks through a per-query lookup table (asymmetric distance computation).

A HIGGS landmark (group = head_dim = D, one scale s, codes of D / p slots into the (n, p) grid) dequantizes to
l = H(y s) / D (times the sign diagonal if any) with y = grid[code] and H the unnormalized Walsh-Hadamard matrix
(H H = D I). Since H is symmetric, q . l = (s / D) (H q) . y: rotate the query once (qr = H q), and a landmark's logit
is s * sum_j LUT[j, code_j] with the table LUT[j, c] = qr[j p:(j + 1) p] . grid[c] / D of the query's D / p slots
and the n grid points (the 1 / D is folded into the table: D is a power of two, so that is exact, and the scorer needs
neither D nor p). A landmark then costs D / p gathers and adds per query head and reads D / p + 4 bytes (EDEN4-256,
D = 128: 32 gathers, 36 bytes), instead of a dequantization (a butterfly per landmark).

This path scores in fp32 without the reference's rounding of the dequantized landmark to the model dtype, so its
scores are not those of kernels/scoring.py (which is bit for bit SparseLayer.select): its top-k is a close
approximation of the reference's (tests/test_kernel_scoring_lut.py measures the recall). The rules are those of
kernels/scoring.py: softmax_max (max over the G query heads of the softmax over the row's landmarks, optionally bf16
probabilities) and mean_dot (the group-mean query's unscaled dot product).

Layout of the table. higgs_lut returns (BH, G, D // p, n) fp32 whose storage is (BH, D // p, n, GP): the G heads of one
(slot, code) entry are adjacent (zero-padded to GP, a power of two), so a landmark's slot j fetches all its heads'
terms with one vector load (16 bytes for G = 4) instead of G scalar gathers. A row's table is D / p * n * GP * 4 bytes
(128 KB for G = 4, D = 128, EDEN4-256; 256 KB for G = 6): too big to stage in shared memory on every GPU and for
several programs per SM, so the kernel gathers from global memory and relies on the caches: programs are launched
with the landmark block as the fastest grid axis, so the programs running at one time all belong to one or two rows
and gather from the same table (in L2, and mostly in each SM's L1).

Structure (as kernels/scoring.py): one program per (landmark block, row); pass 0 stores the G logits of the block and
its per-block (max, sum-exp) per head; scoring._reduce_stats reduces a row's block statistics in the fixed order
0, 1, ...; pass 1 turns the stored logits (or re-gathered ones: bit-identical) into probabilities and their max over
the heads. Ragged rows (lengths (BH,) on the device): landmarks past lengths[bh] are never read and score -inf,
blocks wholly past it add exactly zero; every reduction runs inside one row's programs with a fixed tile, so a row's
scores are bit for bit those of the row alone, whatever the stack. The table is built with elementwise torch ops only
(no matmul whose algorithm follows the batch shape), nothing syncs with the host: the call can be captured in a
CUDA graph.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from shadowkv_lab.quant.hadamard import fwht

from .common import next_pow2, round_bf16
from .scoring import _RED_CHUNK, _check_lengths, _reduce_stats

RULES = ("softmax_max", "mean_dot")
LUT_TILE = (64, 4)  # (landmarks per program, warps): defaults, tunable per call (benchmarks/bench_scoring_lut.py)


def heads_padded(G: int) -> int:
    """GP: the heads of one table entry, padded to a power of two (>= 2: no size-1 tile dimension in the kernel)."""
    return max(2, next_pow2(G))


def _mean_query(qf: torch.Tensor) -> torch.Tensor:
    """(BH, G, D) fp32 -> (BH, 1, D): the group mean summed head by head ((q_0 + q_1) + ...) / G, as
    scoring.prepare_query does, so that no reduction whose strategy follows the batch shape touches it."""
    acc = qf[:, 0]
    for j in range(1, qf.shape[1]):
        acc = acc + qf[:, j]
    return (acc / qf.shape[1])[:, None]


def higgs_lut(q: torch.Tensor, grid: torch.Tensor, rule: str = "softmax_max",
              signs: torch.Tensor | None = None) -> torch.Tensor:
    """Lookup tables of the queries q (BH, G, D) (any float dtype) for landmarks quantized on grid (n, p) fp32:
    (BH, G, D // p, n) fp32 with LUT[b, g, j, c] = (H q'_bg / D)[j p:(j + 1) p] . grid[c], q' = q * signs (the HIGGS sign
    diagonal, (D,), when the landmarks were quantized with one). rule "mean_dot": the table of the group-mean query
    (G = 1). Storage: heads innermost, zero-padded to heads_padded(G) (module docstring): the layout
    landmark_scores_lut reads without a copy. Elementwise torch ops only (fwht, then p products and p - 1 sums in the
    order i = 0, 1, ...): a row's table does not depend on the batch; no host sync. q . l = s * sum_j LUT[j, code_j]
    for the landmark l of codes `code` and scale s (H q / D: an exact power-of-two scaling of H q)."""
    if rule not in RULES:
        raise ValueError(f"rule {rule!r} not supported; allowed: {', '.join(RULES)}")
    if q.dim() != 3 or grid.dim() != 2:
        raise ValueError(f"q must be (BH, G, D) and grid (n, p), got {tuple(q.shape)} and {tuple(grid.shape)}")
    BH, G, D = q.shape
    n, p = grid.shape
    if D % p:
        raise ValueError(f"head dim {D} is not a multiple of the grid dimension p={p}")
    qf = q.float()
    if rule == "mean_dot":
        qf = _mean_query(qf)
    if signs is not None:
        qf = qf * signs.float()
    qr = fwht(qf) / D  # (BH, G', D): H q / D, exact (D a power of two: fwht checks)
    Gq, J = qr.shape[1], D // p
    qs = qr.view(BH, Gq, J, p).permute(0, 2, 1, 3).unsqueeze(2)  # (BH, J, 1, G', p)
    g = grid.float().to(q.device)
    lut = qs[..., 0] * g[:, 0, None]  # (BH, J, n, G')
    for i in range(1, p):
        lut = lut + qs[..., i] * g[:, i, None]
    GP = heads_padded(Gq)
    if GP > Gq:
        lut = torch.nn.functional.pad(lut, (0, GP - Gq))
    return lut.contiguous()[..., :Gq].permute(0, 3, 1, 2)


def _lut_storage(lut: torch.Tensor) -> torch.Tensor:
    """The (BH, J, n, GP) storage behind a table in higgs_lut's layout; any other (BH, G, J, n) tensor is copied into
    that layout (zero-padded heads)."""
    BH, G, J, n = lut.shape
    GP = heads_padded(G)
    if (lut.dtype == torch.float32 and lut.storage_offset() == 0 and lut.stride() == (J * n * GP, 1, n * GP, GP)
            and lut.untyped_storage().nbytes() >= BH * J * n * GP * 4):
        return torch.as_strided(lut, (BH, J, n, GP), (J * n * GP, n * GP, GP, 1))
    st = torch.zeros(BH, J, n, GP, dtype=torch.float32, device=lut.device)
    st[..., :G] = lut.float().permute(0, 2, 3, 1)
    return st


@triton.jit
def _lut_logits(codes_ptr, sc_ptr, lut_ptr, bh, m, mmask, stride_cb, stride_cm, stride_sb, coef,
                J: tl.constexpr, N: tl.constexpr, GP: tl.constexpr):
    """(BM, GP) fp32: sum_j LUT[bh, j, code_mj, :] * (s_m * coef) for the landmarks m of row bh (coef: the logit scaling,
    1 for mean_dot; masked landmarks: code 0, scale 0, their codes and scales never read). One vector load of the GP
    heads per (landmark, slot) from the row's table in global memory (no mask: every code addresses the table)."""
    jj = tl.arange(0, J)
    gg = tl.arange(0, GP)
    code = tl.load(codes_ptr + bh * stride_cb + m[:, None] * stride_cm + jj[None, :], mask=mmask[:, None], other=0)
    off = (jj[None, :] * N + code.to(tl.int32)) * GP  # (BM, J)
    t = tl.load(lut_ptr + bh * (J * N * GP) + off[:, :, None] + gg[None, None, :])  # (BM, J, GP)
    sc = tl.load(sc_ptr + bh * stride_sb + m, mask=mmask, other=0.0).to(tl.float32)
    return tl.sum(t, 1) * (sc * coef)[:, None]


@triton.jit
def _lut_pass(codes_ptr, sc_ptr, lut_ptr, stat_ptr, out_ptr, lg_ptr, len_ptr, M, NB, coef,
              stride_cb, stride_cm, stride_sb,
              G: tl.constexpr, GP: tl.constexpr, J: tl.constexpr, N: tl.constexpr, MODE: tl.constexpr,
              BF16_PROBS: tl.constexpr, BM: tl.constexpr, STORE: tl.constexpr, RAGGED: tl.constexpr):
    """Grid (NB, BH): landmark block fastest, so concurrent programs share a row's table.
    MODE 0: the scaled logits' per-block (max, sum-exp) per head -> stat (BH, 2, GP, NB); STORE: the logits -> lg
    (BH, G, M). MODE 1: softmax_max scores from the reduced statistics red (BH, 2, GP) (in stat_ptr) -> out (BH, M),
    the logits read back from lg (STORE) or gathered again. MODE 2: mean_dot scores (G = 1 table) -> out (BH, M).
    RAGGED: row bh's valid landmarks are its first min(len[bh], M); the others are never read and score -inf."""
    blk = tl.program_id(0)
    bh = tl.program_id(1).to(tl.int64)
    if RAGGED:
        n = tl.minimum(tl.load(len_ptr + bh).to(tl.int32), M)
    else:
        n = M
    m = blk * BM + tl.arange(0, BM)
    mmask = m < n
    gg = tl.arange(0, GP)
    lg_off = lg_ptr + bh * G * M + gg[None, :] * M + m[:, None]
    lg_mask = mmask[:, None] & (gg[None, :] < G)
    if MODE == 1 and STORE:
        s = tl.load(lg_off, mask=lg_mask, other=float("-inf"))  # bit for bit the logits of pass 0
    else:
        s = _lut_logits(codes_ptr, sc_ptr, lut_ptr, bh, m, mmask, stride_cb, stride_cm, stride_sb, coef, J, N, GP)
        if MODE == 2:
            # a new name: the compiler types `s` across the branches, and the code below needs it (BM, GP)
            dot = tl.sum(tl.where(gg[None, :] == 0, s, 0.0), 1)
            tl.store(out_ptr + bh * M + m, tl.where(mmask, dot, float("-inf")), mask=m < M)
            return
        s = tl.where(mmask[:, None], s, float("-inf"))
    if MODE == 0:
        if STORE:
            tl.store(lg_off, s, mask=lg_mask)
        mx = tl.max(s, 0)  # (GP,); -inf for a block wholly past the row's length
        se = tl.sum(tl.exp(s - tl.where(mx == float("-inf"), 0.0, mx)[None, :]), 0)  # such a block: exactly 0
        base = stat_ptr + bh * 2 * GP * NB + gg * NB + blk
        tl.store(base, mx)
        tl.store(base + GP * NB, se)
    else:
        mx = tl.load(stat_ptr + bh * 2 * GP + gg)
        tot = tl.load(stat_ptr + bh * 2 * GP + GP + gg)
        p = tl.exp(s - mx[None, :]) / tot[None, :]  # exp(s - max) / sum, as torch.softmax (kernels/scoring.py)
        if BF16_PROBS:
            p = round_bf16(p)
        p = tl.where(gg[None, :] < G, p, -1.0)
        tl.store(out_ptr + bh * M + m, tl.where(mmask, tl.max(p, 1), float("-inf")), mask=m < M)


def _check(codes: torch.Tensor, scales: torch.Tensor, lut: torch.Tensor, rule: str) -> None:
    if rule not in RULES:
        raise ValueError(f"rule {rule!r} not supported; allowed: {', '.join(RULES)}")
    if codes.dim() != 3 or codes.dtype != torch.uint8:
        raise ValueError(f"codes must be (BH, M, D // p) uint8, got {tuple(codes.shape)} {codes.dtype}")
    BH, M, J = codes.shape
    if scales.shape != (BH, M):
        raise ValueError(f"scales must have shape ({BH}, {M}), got {tuple(scales.shape)}")
    if lut.dim() != 4 or lut.shape[0] != BH or lut.shape[2] != J:
        raise ValueError(f"lut must be (BH={BH}, G, D // p={J}, n), got {tuple(lut.shape)}")
    if lut.shape[3] > 256:
        raise ValueError(f"uint8 codes address at most 256 grid points, the table has {lut.shape[3]}")
    if rule == "mean_dot" and lut.shape[1] != 1:
        raise ValueError(f"mean_dot needs the group-mean query's table (G = 1: higgs_lut(..., rule='mean_dot')), "
                         f"got G = {lut.shape[1]}")


def landmark_scores_lut(codes: torch.Tensor, scales: torch.Tensor, lut: torch.Tensor, scaling: float,
                        rule: str = "softmax_max", bf16_probs: bool = False, lengths: torch.Tensor | None = None,
                        block_m: int | None = None, num_warps: int | None = None,
                        store_logits: bool = True) -> torch.Tensor:
    """Scores (BH, M) fp32 of HIGGS landmarks (codes (BH, M, D // p) uint8, scales (BH, M), group = D) from the
    queries' tables lut = higgs_lut(q, grid, rule) (BH, G, D // p, n).

    softmax_max: max over the G heads of softmax over the row's landmarks of scaling * q . l (bf16_probs: the
    probabilities rounded to bf16); mean_dot: mean(q) . l (lut of G = 1). lengths: None or (BH,) integers on the
    device, row bh's valid landmarks are its first lengths[bh] (the rest is never read and scores -inf); each row's
    scores are bit-identical whatever the stack (module docstring). store_logits: pass 1 reads pass 0's logits back
    from a (BH, G, M) fp32 buffer (default) instead of gathering them again (bit-identical either way). block_m (a power
    of two >= 16) / num_warps: the tile, for tuning; batch invariance holds for any fixed block_m."""
    _check(codes, scales, lut, rule)
    BH, M, J = codes.shape
    G, n = lut.shape[1], lut.shape[3]
    if J & (J - 1):
        raise ValueError(f"D // p = {J} slots per landmark must be a power of two")
    block_m = LUT_TILE[0] if block_m is None else block_m
    if block_m < 16 or block_m & (block_m - 1):
        raise ValueError(f"block_m must be a power of two >= 16, got {block_m}")
    if num_warps is not None and num_warps not in (1, 2, 4, 8, 16):
        raise ValueError(f"num_warps must be one of 1, 2, 4, 8, 16, got {num_warps}")
    _check_lengths(lengths, BH, codes.device)
    if codes.stride(2) != 1:
        codes = codes.contiguous()
    if scales.stride(1) != 1:
        scales = scales.contiguous()
    table = _lut_storage(lut)
    GP = table.shape[3]
    NB = triton.cdiv(M, block_m)
    out = torch.empty(BH, M, dtype=torch.float32, device=codes.device)
    lens = lengths if lengths is not None else out
    strides = (codes.stride(0), codes.stride(1), scales.stride(0))
    kw = dict(GP=GP, J=J, N=n, BF16_PROBS=bf16_probs, BM=block_m, RAGGED=lengths is not None,
              num_warps=num_warps or LUT_TILE[1])
    if rule == "mean_dot":
        _lut_pass[(NB, BH)](codes, scales, table, out, out, out, lens, M, NB, 1.0, *strides, G=1, MODE=2,
                            STORE=False, **kw)
        return out
    stat = torch.empty(BH, 2, GP, NB, dtype=torch.float32, device=codes.device)
    lg = torch.empty(BH, G, M, dtype=torch.float32, device=codes.device) if store_logits else out
    _lut_pass[(NB, BH)](codes, scales, table, stat, out, lg, lens, M, NB, scaling, *strides, G=G, MODE=0,
                        STORE=store_logits, **kw)
    red = torch.empty(BH, 2, GP, dtype=torch.float32, device=codes.device)
    _reduce_stats[(BH,)](stat, red, NB, GP=GP, CH=_RED_CHUNK)
    _lut_pass[(NB, BH)](codes, scales, table, red, out, lg, lens, M, NB, scaling, *strides, G=G, MODE=1,
                        STORE=store_logits, **kw)
    return out


def _lut_sums(codes: torch.Tensor, lut: torch.Tensor) -> torch.Tensor:
    """(BH, G, M) fp32: sum_j LUT[bh, g, j, code_mj] (torch gather)."""
    BH, M, J = codes.shape
    idx = codes.long().transpose(1, 2)[:, None].expand(BH, lut.shape[1], J, M)  # (BH, G, J, M)
    return torch.gather(lut.float(), 3, idx).sum(2)


def lut_logits_ref(codes: torch.Tensor, scales: torch.Tensor, lut: torch.Tensor) -> torch.Tensor:
    """(BH, G, M) fp32 unscaled q . l of every landmark from the tables (torch): sum_j LUT[g, j, code_j] * s."""
    return _lut_sums(codes, lut) * scales.float()[:, None, :]


def landmark_scores_lut_ref(codes: torch.Tensor, scales: torch.Tensor, lut: torch.Tensor, scaling: float,
                            rule: str = "softmax_max", bf16_probs: bool = False,
                            lengths: torch.Tensor | None = None) -> torch.Tensor:
    """The torch reference of landmark_scores_lut, same math in fp32 (logits scaled as the kernel does:
    sum_j LUT * (s * scaling)); padding (past lengths[bh]) scores -inf and stays out of the softmax."""
    _check(codes, scales, lut, rule)
    M = codes.shape[1]
    acc = _lut_sums(codes, lut)  # (BH, G, M)
    valid = None
    if lengths is not None:
        valid = torch.arange(M, device=codes.device)[None, :] < lengths.to(codes.device)[:, None]  # (BH, M)
    if rule == "mean_dot":
        score = (acc * scales.float()[:, None, :])[:, 0]
        return score if valid is None else score.masked_fill(~valid, float("-inf"))
    logits = acc * (scales.float() * scaling)[:, None, :]
    if valid is not None:
        logits = logits.masked_fill(~valid[:, None, :], float("-inf"))
    p = torch.softmax(logits, -1)
    if bf16_probs:
        p = p.to(torch.bfloat16).float()
    score = p.max(1).values
    return score if valid is None else score.masked_fill(~valid, float("-inf"))
