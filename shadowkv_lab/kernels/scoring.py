"""Landmark scoring fused with dequantization (bf16 / fp16, FP8, HIGGS), both selection rules, then top-k.

Rules (docs/algorithms.md, "Decode step", step 2), per KV head h with G query heads q_j and M candidate landmarks l_c:
  softmax_max: score_c = max_j softmax_c(q_j . l_c * scaling)   (optionally rounded to bf16 like the reference)
  mean_dot:    score_c = mean_j(q_j) . l_c                       (unscaled, no softmax: the serving rule)

HIGGS landmarks (group = head_dim = D, one scale per landmark) are dequantized per tile bit for bit as the torch
reference (SparseLayer.select) does: l = fwht(grid[code] * s) / D (times the sign diagonal if any) with the reference's
butterfly order, then rounded to the model dtype (bf16: round-to-nearest-even in integer arithmetic, so that the
interpreter, which truncates on .to(bf16), rounds as CUDA does), and only then dotted with the query. Scoring in the
rotated domain instead (never inverse-transforming a landmark) is cheaper but rounds elsewhere, and on models with
massive key/query channels that changes the top-k (docs/gpu.md; the measurements are in benchmarks/README.md).
softmax_max runs two passes (per-block max / sum-exp, then the scores) with a one-program-per-row reduction of the
block statistics between them (the blocks' max, then their rescaled sum-exp added in block order 0, 1, ...).
bf16 / fp8 landmarks are re-read in the second pass; HIGGS landmarks are dequantized once, their G fp32 logits kept for
the second pass (bit-identical scores).
Batched: BH = batch * KV heads rows. Ragged: lengths (BH,) on the device gives each row's count of valid landmarks
(the data padded to M for the stack); padding is never read and scores -inf. Batch-invariant: a row's scores are bit
for bit those of the row alone (unpadded, BH = its heads) whatever the stack: tiles of a per-format constant size start
at landmark 0, no reduction spans rows or depends on BH or M, and blocks past a row's length add exactly nothing.
Counts are only read by the kernels (no host sync), so the step can be captured in a CUDA graph.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from shadowkv_lab.selection import chunk_positions, int32_keys, topk_indices

from .common import e4m3_to_f32, fwht_butterfly, hadamard, interpreting, mma, next_pow2, round_bf16

FMT_NATIVE, FMT_FP8, FMT_HIGGS = 0, 1, 2

# (landmarks per tile, warps) of the HIGGS scoring pass: the configuration the end-to-end token check ran with
# (benchmarks/results/kernels_e2e.json). A faster tile exists (benchmarks/README.md, scoring sweep), but the tile
# changes the softmax normalizer's summation order, so a switch needs its own end-to-end check. The stacked decode
# step (cache/batched.py) scores landmarks dequantized once (FMT_NATIVE); this tile applies to FMT_HIGGS scoring
# (benchmarks/bench_decode_step.py, the kernel tests).
HIGGS_TILE = (128, 8)


@dataclass
class Landmarks:
    """Kernel layout of one layer's candidate landmarks for BH rows (batch * KV heads).

    native: data (BH, M, D) bf16/fp16/fp32; fp8: data (BH, M, D) uint8 (e4m3 bits); higgs: data = codes
    (BH, M, D // p) uint8, scales (BH, M) fp32, grid (n, p) fp32, signs (D,) fp32 or None, dtype: the model dtype the
    reference rounds dequantized landmarks to (SparseLayer.landmark_dtype) before scoring."""

    fmt: int
    data: torch.Tensor
    scales: torch.Tensor | None = None
    grid: torch.Tensor | None = None
    p: int = 1
    signs: torch.Tensor | None = None
    dtype: torch.dtype = torch.bfloat16

    @property
    def BH(self) -> int:
        return self.data.shape[0]

    @property
    def M(self) -> int:
        return self.data.shape[1]

    @property
    def D(self) -> int:
        return self.data.shape[2] * (self.p if self.fmt == FMT_HIGGS else 1)

    @property
    def nbytes(self) -> int:
        return self.data.nbytes + (self.scales.nbytes if self.scales is not None else 0)

    def dequantize(self) -> torch.Tensor:
        """(BH, M, D) fp32 landmarks (the torch reference; HIGGS: before the rounding to `dtype`)."""
        if self.fmt == FMT_NATIVE:
            return self.data.float()
        if self.fmt == FMT_FP8:
            return self.data.view(torch.float8_e4m3fn).float()
        BH, M, _ = self.data.shape
        y = self.grid[self.data.long()].reshape(BH, M, self.D) * self.scales[..., None]
        x = y @ hadamard(self.D, y.device) / self.D
        return x * self.signs if self.signs is not None else x


@triton.jit
def _load_landmarks(lm_ptr, grid_ptr, sc_ptr, sgn_ptr, row, srow, m, mmask, dd, stride_lm, FMT: tl.constexpr,
                    P: tl.constexpr, BM: tl.constexpr, D: tl.constexpr, LOG2D: tl.constexpr, SIGNS: tl.constexpr,
                    LM_DT: tl.constexpr):
    """(BM, D) bf16 tile of landmarks m of row `row`: native, fp8, or HIGGS dequantized bit for bit as the torch
    reference does (HiggsQuantizer.dequantize: fwht(grid[code] * s) / D, times the signs; then the cast to the model
    dtype LM_DT: 0 bf16, 1 fp16, 2 fp32)."""
    if FMT == 0:
        x = tl.load(lm_ptr + row + m[:, None] * stride_lm + dd[None, :], mask=mmask[:, None], other=0.0)
    elif FMT == 1:
        x = e4m3_to_f32(tl.load(lm_ptr + row + m[:, None] * stride_lm + dd[None, :], mask=mmask[:, None], other=0))
    else:
        code = tl.load(lm_ptr + row + m[:, None] * stride_lm + (dd // P)[None, :], mask=mmask[:, None], other=0)
        y = tl.load(grid_ptr + code.to(tl.int32) * P + (dd % P)[None, :])  # fp32 grid points
        y = y * tl.load(sc_ptr + srow + m, mask=mmask, other=0.0)[:, None]
        x = fwht_butterfly(y, BM, D, LOG2D) * (1.0 / D)  # D a power of two: exact, as the reference's / D
        if SIGNS:
            x = x * tl.load(sgn_ptr + dd)[None, :]
        if LM_DT == 0:
            x = round_bf16(x)
        elif LM_DT == 1:
            x = x.to(tl.float16).to(tl.float32)
    return x.to(tl.bfloat16)


@triton.jit
def _score_pass(q_ptr, lm_ptr, sc_ptr, grid_ptr, sgn_ptr, stat_ptr, out_ptr, lg_ptr, len_ptr, M, NB, scaling,
                stride_lb, stride_lm, stride_sb,
                G: tl.constexpr, GP: tl.constexpr, QG: tl.constexpr, D: tl.constexpr, FMT: tl.constexpr,
                P: tl.constexpr, LOG2D: tl.constexpr, SIGNS: tl.constexpr, LM_DT: tl.constexpr,
                MODE: tl.constexpr, BF16_PROBS: tl.constexpr, BM: tl.constexpr, F32_DOT: tl.constexpr,
                STORE: tl.constexpr, RAGGED: tl.constexpr):
    """MODE 0: per-block (max, sum-exp) of the scaled logits per query head -> stat (BH, 2, GP, NB); STORE: the
    scaled logits themselves too -> lg (BH, G, M) fp32.
    MODE 1: softmax_max scores from the reduced (max, sum of exp(logit - max)) in stat (BH, 2, GP) -> out (BH, M);
    STORE: the logits are read back from lg instead of recomputed from the landmarks.
    MODE 2: mean_dot scores (q holds the group-mean query in row 0) -> out (BH, M).
    RAGGED: row bh's valid landmarks are its first min(len[bh], M) (read on the device); the others are never loaded,
    score -inf and enter no statistic. Otherwise all M are valid.
    q: (BH, QG, D) bf16, rows past QG (up to GP) read as zeros."""
    bh = tl.program_id(0).to(tl.int64)
    blk = tl.program_id(1)
    if RAGGED:
        n = tl.minimum(tl.load(len_ptr + bh).to(tl.int32), M)
    else:
        n = M
    m = blk * BM + tl.arange(0, BM)
    mmask = m < n
    dd = tl.arange(0, D)
    gg = tl.arange(0, GP)
    lg_off = lg_ptr + bh * G * M + gg[None, :] * M + m[:, None]
    lg_mask = mmask[:, None] & (gg[None, :] < G)
    if MODE == 1 and STORE:
        s = tl.load(lg_off, mask=lg_mask, other=float("-inf"))  # bit for bit the logits of pass 0
    else:
        x = _load_landmarks(lm_ptr, grid_ptr, sc_ptr, sgn_ptr, bh * stride_lb, bh * stride_sb, m, mmask, dd,
                            stride_lm, FMT, P, BM, D, LOG2D, SIGNS, LM_DT)
        qt = tl.load(q_ptr + bh * QG * D + gg[None, :] * D + dd[:, None], mask=gg[None, :] < QG, other=0.0)  # (D, GP)
        s = mma(x, qt, F32_DOT)  # (BM, GP) fp32
        if MODE == 2:
            # a new name: the compiler types `s` across the branches, and the code below needs it (BM, GP)
            dot = tl.sum(tl.where(gg[None, :] == 0, s, 0.0), 1)
            tl.store(out_ptr + bh * M + m, tl.where(mmask, dot, float("-inf")), mask=m < M)
            return
        s = tl.where(mmask[:, None], s * scaling, float("-inf"))
    if MODE == 0:
        if STORE:
            tl.store(lg_off, s, mask=lg_mask)
        mx = tl.max(s, 0)  # (GP,); -inf for a block wholly past the row's length
        se = tl.sum(tl.exp(s - tl.where(mx == float("-inf"), 0.0, mx)[None, :]), 0)  # such a block: exactly 0
        base = stat_ptr + bh * 2 * GP * NB + gg * NB + blk
        tl.store(base, mx)
        tl.store(base + GP * NB, se)
    else:
        # exp(s - max) / sum as torch.softmax: exp(s - lse) would round s - lse at the logits' magnitude (hundreds on
        # models with massive activations), shifting the probabilities across bf16 ties
        mx = tl.load(stat_ptr + bh * 2 * GP + gg)
        tot = tl.load(stat_ptr + bh * 2 * GP + GP + gg)
        p = tl.exp(s - mx[None, :]) / tot[None, :]
        if BF16_PROBS:
            p = round_bf16(p)  # = p.to(bf16) on CUDA; the interpreter would truncate
        p = tl.where(gg[None, :] < G, p, -1.0)
        tl.store(out_ptr + bh * M + m, tl.where(mmask, tl.max(p, 1), float("-inf")), mask=m < M)


@triton.jit
def _reduce_stats(stat_ptr, red_ptr, NB, GP: tl.constexpr, CH: tl.constexpr):
    """stat (BH, 2, GP, NB) per-block (max, sum-exp) -> red (BH, 2, GP): the row max gm over blocks, then
    tot = sum_b se_b * exp(mx_b - gm). One program per row, nothing shaped by the batch. Blocks are read CH at a time
    from block 0; column j of the (GP, CH) accumulators takes blocks j, j + CH, j + 2 CH, ... in order, and the CH
    columns are reduced once after the loop by a reduction of one fixed shape. A block wholly past the row's length
    (mx = -inf, se = 0) leaves gm unchanged and adds exactly +0.0, so padding the row to any NB gives its unpadded
    result bit for bit, and the row's result never depends on BH. No reduction sits inside the loops: Triton 3.6's
    thread-locality pass fails on a loop-carried reduction here when NB is specialised as a multiple of 16."""
    bh = tl.program_id(0).to(tl.int64)
    gg = tl.arange(0, GP)
    cc = tl.arange(0, CH)
    base = stat_ptr + bh * 2 * GP * NB + gg[:, None] * NB
    gm2 = tl.full((GP, CH), float("-inf"), tl.float32)
    for b0 in range(0, NB, CH):
        b = b0 + cc
        mx = tl.load(base + b[None, :], mask=b[None, :] < NB, other=float("-inf"))
        gm2 = tl.maximum(gm2, mx)
    gm = tl.max(gm2, 1)  # order-free: max is exact
    acc = tl.zeros((GP, CH), tl.float32)
    for b0 in range(0, NB, CH):
        b = b0 + cc
        bmask = b[None, :] < NB
        mx = tl.load(base + b[None, :], mask=bmask, other=float("-inf"))
        se = tl.load(base + GP * NB + b[None, :], mask=bmask, other=0.0)
        acc = acc + tl.where(mx == float("-inf"), 0.0, se * tl.exp(mx - gm[:, None]))  # no exp(-inf - -inf) = NaN
    tl.store(red_ptr + bh * 2 * GP + gg, gm)
    tl.store(red_ptr + bh * 2 * GP + GP + gg, tl.sum(acc, 1))


def prepare_query(lm: Landmarks, q: torch.Tensor, rule: str) -> tuple[torch.Tensor, int]:
    """q (BH, G, D) post-RoPE queries -> (operand (BH, QG, D) bf16, GP): the kernel reads QG rows and takes rows
    QG..GP-1 as zeros, GP >= 16 (the tensor-core tile). A bf16 query is the operand as it is (padding it cost two
    kernels a call); mean_dot's operand is the group mean, summed head by head, elementwise ((q_0 + q_1) + ...) / G, so
    no reduction kernel whose strategy follows the batch shape touches it (on CPU it equals q.mean(1) bit for bit);
    any other dtype is rounded to bf16 once, in a zero-padded copy."""
    BH, G, D = q.shape
    if rule != "mean_dot" and q.dtype == torch.bfloat16:
        return q.contiguous(), max(16, next_pow2(G))
    qf = q  # rounded to bf16 once, in the copy below (through fp32 it rounds the same: a second kernel for nothing)
    if rule == "mean_dot":
        qf = q.float()
        acc = qf[:, 0]
        for j in range(1, G):
            acc = acc + qf[:, j]
        qf = (acc / G)[:, None]
    GP = max(16, next_pow2(qf.shape[1]))
    out = torch.zeros(BH, GP, D, dtype=torch.bfloat16, device=q.device)
    out[:, : qf.shape[1]] = qf
    return out, GP


_LM_DTYPES = {torch.bfloat16: 0, torch.float16: 1, torch.float32: 2}
_RED_CHUNK = 16  # blocks per tile of the block-statistics reduction (fixed: the order of the sum follows it)


def _check_lengths(lengths: torch.Tensor | None, BH: int, device) -> None:
    """Shape, dtype and device only: the values stay on the device (no sync, CUDA-graph safe)."""
    if lengths is None:
        return
    if lengths.dim() != 1 or lengths.shape[0] != BH:
        raise ValueError(f"lengths must have shape ({BH},) (one count per row), got {tuple(lengths.shape)}")
    if lengths.dtype.is_floating_point or lengths.dtype.is_complex or lengths.dtype == torch.bool:
        raise ValueError(f"lengths must be an integer tensor, got {lengths.dtype}")
    if lengths.device != device:
        raise ValueError(f"lengths must be on the scores' device {device}, got {lengths.device}")


def landmark_scores(lm: Landmarks, q: torch.Tensor, scaling: float, rule: str = "softmax_max",
                    bf16_probs: bool = False, block_m: int | None = None, num_warps: int | None = None,
                    store_logits: bool | None = None, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """Triton scores (BH, M) fp32 of every candidate landmark; q (BH, G, D).

    lengths: None (every row has all lm.M landmarks) or a (BH,) integer tensor on q's device: row bh's valid
    landmarks are its first lengths[bh] (1..M; larger counts are read as M), the rest is padding of a stack of rows.
    Padding is never read, scores -inf (both rules) and does not enter the softmax. The counts are read by the kernels
    only (no host sync: CUDA-graph safe). Each row's scores are bit-identical whatever BH, M, padding and batch mates:
    tiles start at landmark 0 with a size fixed per format, every reduction runs inside one row's programs in a fixed
    order, and blocks past a row's length add exactly nothing.

    softmax_max needs every logit before any probability. store_logits (default: for HIGGS landmarks, whose
    dequantization costs far more than re-reading 4 * G bytes per landmark) keeps pass 0's logits in a (BH, G, M)
    fp32 buffer for pass 1; otherwise pass 1 dequantizes and scores the landmarks again (bf16 / fp8: re-reading them
    is cheaper than a logit buffer). Both give bit-identical scores. block_m / num_warps: tile size (a power of two
    >= 16) and warps, for tuning (benchmarks/bench_decode_step.py --sweep-scoring); batch invariance holds for any
    fixed block_m."""
    BH, G, D = q.shape
    M = lm.M
    higgs = lm.fmt == FMT_HIGGS
    block_m = (HIGGS_TILE[0] if higgs else 128) if block_m is None else block_m
    if block_m < 16 or block_m & (block_m - 1):
        raise ValueError(f"block_m must be a power of two >= 16, got {block_m}")
    if num_warps is not None and num_warps not in (1, 2, 4, 8, 16):
        raise ValueError(f"num_warps must be one of 1, 2, 4, 8, 16, got {num_warps}")
    if lm.dtype not in _LM_DTYPES:
        raise ValueError(f"landmark dtype {lm.dtype} not supported; allowed: {', '.join(map(str, _LM_DTYPES))}")
    _check_lengths(lengths, BH, q.device)
    store = higgs if store_logits is None else bool(store_logits)
    qk, GP = prepare_query(lm, q, rule)
    NB = triton.cdiv(M, block_m)
    out = torch.empty(BH, M, dtype=torch.float32, device=q.device)
    data = lm.data
    sc = lm.scales if lm.scales is not None else out
    grid = lm.grid if higgs else out
    sgn = lm.signs if higgs and lm.signs is not None else out
    args = (data, sc, grid, sgn)
    strides = (data.stride(0), data.stride(1), sc.stride(0) if lm.scales is not None else 0)
    lens = lengths if lengths is not None else out
    # no FMA contraction: the HIGGS butterfly must round grid * s and every sum exactly as the torch reference
    kw = dict(GP=GP, QG=qk.shape[1], D=D, FMT=lm.fmt, P=lm.p, LOG2D=D.bit_length() - 1,
              SIGNS=higgs and lm.signs is not None, LM_DT=_LM_DTYPES[lm.dtype], BF16_PROBS=bf16_probs, BM=block_m, F32_DOT=interpreting(),
              RAGGED=lengths is not None, num_warps=num_warps or (HIGGS_TILE[1] if higgs else 4),
              enable_fp_fusion=not higgs)
    if rule == "mean_dot":
        _score_pass[(BH, NB)](qk, *args, out, out, out, lens, M, NB, 1.0, *strides, G=1, MODE=2, STORE=False, **kw)
        return out
    stat = torch.empty(BH, 2, GP, NB, dtype=torch.float32, device=q.device)
    lg = torch.empty(BH, G, M, dtype=torch.float32, device=q.device) if store else out
    _score_pass[(BH, NB)](qk, *args, stat, out, lg, lens, M, NB, scaling, *strides, G=G, MODE=0, STORE=store, **kw)
    red = torch.empty(BH, 2, GP, dtype=torch.float32, device=q.device)
    _reduce_stats[(BH,)](stat, red, NB, GP=GP, CH=_RED_CHUNK)
    _score_pass[(BH, NB)](qk, *args, red, out, lg, lens, M, NB, scaling, *strides, G=G, MODE=1, STORE=store, **kw)
    return out


def landmark_scores_ref(lm: Landmarks, q: torch.Tensor, scaling: float, rule: str = "softmax_max",
                        bf16_probs: bool = False, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """The torch reference (SparseLayer.select): dequantize, then the rule in fp32. lengths: as landmark_scores
    (a masked softmax over each row's first lengths[bh] landmarks; padding scores -inf)."""
    land = lm.dequantize()
    valid = None
    if lengths is not None:
        valid = torch.arange(lm.M, device=land.device)[None, :] < lengths.to(land.device)[:, None]  # (BH, M)
    if rule == "mean_dot":
        score = torch.matmul(q.float().mean(1, keepdim=True), land.transpose(1, 2)).squeeze(1)
        return score if valid is None else score.masked_fill(~valid, float("-inf"))
    logits = torch.matmul(q.float(), land.transpose(1, 2)) * scaling
    if valid is not None:
        logits = logits.masked_fill(~valid[:, None, :], float("-inf"))
    p = torch.softmax(logits, -1)
    if bf16_probs:
        p = p.to(torch.bfloat16).float()
    score = p.max(1).values
    return score if valid is None else score.masked_fill(~valid, float("-inf"))


@triton.jit
def _rank_keys(s_ptr, out_ptr, n, SHORT: tl.constexpr, BLOCK: tl.constexpr):
    """selection.rank_keys for one block of one row: SHORT, the int32 key of bf16 scores; else the int64 key."""
    row = tl.program_id(0).to(tl.int64)
    i = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    m = i < n
    x = tl.load(s_ptr + row * n + i, mask=m, other=0.0).to(tl.float32)
    x = tl.where(x == 0.0, 0.0, x)  # -0.0 becomes +0.0, equal as in a sort
    bits = x.to(tl.int32, bitcast=True)
    rev = n - 1 - i
    if SHORT:
        bits = bits >> 16  # arithmetic: the bf16 pattern, sign-extended
        key = tl.where(bits < 0, bits ^ 0x7FFF, bits) * 65536 + rev
    else:
        b = bits.to(tl.int64)
        key = tl.where(b < 0, b ^ 0x7FFFFFFF, b) * 4294967296 + rev.to(tl.int64)
    tl.store(out_ptr + row * n + i, key, mask=m)


RANK_BLOCK = 1024


def rank_keys_fused(score: torch.Tensor, bf16_scores: bool = False) -> torch.Tensor:
    """selection.rank_keys in one kernel (the torch version is about ten elementwise kernels; a stacked step runs it
    for every layer and method group): the same keys, bit for bit."""
    n = score.shape[-1]
    short = int32_keys(n, bf16_scores)
    s = score.contiguous().view(-1, n)
    out = torch.empty(s.shape, dtype=torch.int32 if short else torch.int64, device=score.device)
    if s.numel():
        _rank_keys[(s.shape[0], triton.cdiv(n, RANK_BLOCK))](s, out, n, SHORT=short, BLOCK=RANK_BLOCK)
    return out.view(score.shape)


def select_topk(score: torch.Tensor, n_sel: int, cand_ids: torch.Tensor | None, chunk: int,
                bf16_scores: bool = False) -> torch.Tensor:
    """Top n_sel chunks per row -> token positions (BH, n_sel * chunk) int64. cand_ids None: candidate i is chunk i.
    Padded scores (-inf) sort after every valid one; ties go to the lowest index (a stable sort, topk_indices), so a
    row's first min(n_sel, length) picks are those of the row alone. bf16_scores: as topk_indices."""
    top = topk_indices(score, n_sel, bf16_scores, keys=rank_keys_fused)
    ids = top if cand_ids is None else torch.gather(cand_ids, 1, top).long()
    return ids if chunk == 1 else chunk_positions(ids, chunk)
