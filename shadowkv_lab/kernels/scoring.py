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
softmax_max runs two passes (per-block max / sum-exp, then the scores). bf16 / fp8 landmarks are re-read in the second
pass; HIGGS landmarks are dequantized once, their G fp32 logits kept for the second pass (bit-identical scores).
Batched: BH = batch * KV heads rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from shadowkv_lab.cache.layer import chunk_positions, topk_indices

from .common import e4m3_to_f32, fwht_butterfly, hadamard, interpreting, mma, next_pow2, round_bf16

FMT_NATIVE, FMT_FP8, FMT_HIGGS = 0, 1, 2

# (landmarks per tile, warps) of the HIGGS scoring pass: the configuration the end-to-end token check ran with
# (benchmarks/results/kernels_e2e.json). A faster tile exists (benchmarks/README.md, scoring sweep), but the tile
# changes the softmax normalizer's summation order, so a switch needs its own end-to-end run
# (check_kernels_e2e.py --higgs-tile 64,4).
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
def _score_pass(q_ptr, lm_ptr, sc_ptr, grid_ptr, sgn_ptr, stat_ptr, out_ptr, lg_ptr, M, NB, scaling,
                stride_lb, stride_lm, stride_sb,
                G: tl.constexpr, GP: tl.constexpr, D: tl.constexpr, FMT: tl.constexpr, P: tl.constexpr,
                LOG2D: tl.constexpr, SIGNS: tl.constexpr, LM_DT: tl.constexpr,
                MODE: tl.constexpr, BF16_PROBS: tl.constexpr, BM: tl.constexpr, F32_DOT: tl.constexpr,
                STORE: tl.constexpr):
    """MODE 0: per-block (max, sum-exp) of the scaled logits per query head -> stat (BH, 2, GP, NB); STORE: the
    scaled logits themselves too -> lg (BH, G, M) fp32.
    MODE 1: softmax_max scores from the reduced (max, sum of exp(logit - max)) in stat (BH, 2, GP) -> out (BH, M);
    STORE: the logits are read back from lg instead of recomputed from the landmarks.
    MODE 2: mean_dot scores (q holds the group-mean query in row 0) -> out (BH, M)."""
    bh = tl.program_id(0).to(tl.int64)
    blk = tl.program_id(1)
    m = blk * BM + tl.arange(0, BM)
    mmask = m < M
    dd = tl.arange(0, D)
    gg = tl.arange(0, GP)
    lg_off = lg_ptr + bh * G * M + gg[None, :] * M + m[:, None]
    lg_mask = mmask[:, None] & (gg[None, :] < G)
    if MODE == 1 and STORE:
        s = tl.load(lg_off, mask=lg_mask, other=float("-inf"))  # bit for bit the logits of pass 0
    else:
        x = _load_landmarks(lm_ptr, grid_ptr, sc_ptr, sgn_ptr, bh * stride_lb, bh * stride_sb, m, mmask, dd,
                            stride_lm, FMT, P, BM, D, LOG2D, SIGNS, LM_DT)
        qt = tl.load(q_ptr + bh * GP * D + gg[None, :] * D + dd[:, None])  # (D, GP) bf16, zero rows past G
        s = mma(x, qt, F32_DOT)  # (BM, GP) fp32
        if MODE == 2:
            tl.store(out_ptr + bh * M + m, tl.sum(tl.where(gg[None, :] == 0, s, 0.0), 1), mask=mmask)
            return
        s = tl.where(mmask[:, None], s * scaling, float("-inf"))
    if MODE == 0:
        if STORE:
            tl.store(lg_off, s, mask=lg_mask)
        mx = tl.max(s, 0)  # (GP,)
        se = tl.sum(tl.exp(s - mx[None, :]), 0)
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
        tl.store(out_ptr + bh * M + m, tl.max(p, 1), mask=mmask)


def prepare_query(lm: Landmarks, q: torch.Tensor, rule: str) -> torch.Tensor:
    """q (BH, G, D) post-RoPE queries -> (BH, GP, D) bf16 kernel operand: group mean for mean_dot, zero-padded to
    GP >= 16 rows (the tensor-core tile)."""
    BH, G, D = q.shape
    qf = q.float()
    if rule == "mean_dot":
        qf = qf.mean(1, keepdim=True)
    GP = max(16, next_pow2(qf.shape[1]))
    out = torch.zeros(BH, GP, D, dtype=torch.bfloat16, device=q.device)
    out[:, : qf.shape[1]] = qf
    return out


_LM_DTYPES = {torch.bfloat16: 0, torch.float16: 1, torch.float32: 2}


def landmark_scores(lm: Landmarks, q: torch.Tensor, scaling: float, rule: str = "softmax_max",
                    bf16_probs: bool = False, block_m: int | None = None, num_warps: int | None = None,
                    store_logits: bool | None = None) -> torch.Tensor:
    """Triton scores (BH, M) fp32 of every candidate landmark; q (BH, G, D).

    softmax_max needs every logit before any probability. store_logits (default: for HIGGS landmarks, whose
    dequantization costs far more than re-reading 4 * G bytes per landmark) keeps pass 0's logits in a (BH, G, M)
    fp32 buffer for pass 1; otherwise pass 1 dequantizes and scores the landmarks again (bf16 / fp8: re-reading them
    is cheaper than a logit buffer). Both give bit-identical scores. block_m / num_warps: tile size (a power of two
    >= 16) and warps, for tuning (benchmarks/bench_decode_step.py --sweep-scoring)."""
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
    store = higgs if store_logits is None else bool(store_logits)
    qk = prepare_query(lm, q, rule)
    GP = qk.shape[1]
    NB = triton.cdiv(M, block_m)
    out = torch.empty(BH, M, dtype=torch.float32, device=q.device)
    data = lm.data
    sc = lm.scales if lm.scales is not None else out
    grid = lm.grid if higgs else out
    sgn = lm.signs if higgs and lm.signs is not None else out
    args = (data, sc, grid, sgn)
    strides = (data.stride(0), data.stride(1), sc.stride(0) if lm.scales is not None else 0)
    # no FMA contraction: the HIGGS butterfly must round grid * s and every sum exactly as the torch reference
    kw = dict(GP=GP, D=D, FMT=lm.fmt, P=lm.p, LOG2D=D.bit_length() - 1, SIGNS=higgs and lm.signs is not None,
              LM_DT=_LM_DTYPES[lm.dtype], BF16_PROBS=bf16_probs, BM=block_m, F32_DOT=interpreting(),
              num_warps=num_warps or (HIGGS_TILE[1] if higgs else 4), enable_fp_fusion=not higgs)
    if rule == "mean_dot":
        _score_pass[(BH, NB)](qk, *args, out, out, out, M, NB, 1.0, *strides, G=1, MODE=2, STORE=False, **kw)
        return out
    stat = torch.empty(BH, 2, GP, NB, dtype=torch.float32, device=q.device)
    lg = torch.empty(BH, G, M, dtype=torch.float32, device=q.device) if store else out
    _score_pass[(BH, NB)](qk, *args, stat, out, lg, M, NB, scaling, *strides, G=G, MODE=0, STORE=store, **kw)
    mx, se = stat[:, 0], stat[:, 1]
    gm = mx.amax(-1, keepdim=True)
    red = torch.stack([gm.squeeze(-1), (se * torch.exp(mx - gm)).sum(-1)], 1).contiguous()  # (BH, 2, GP)
    _score_pass[(BH, NB)](qk, *args, red, out, lg, M, NB, scaling, *strides, G=G, MODE=1, STORE=store, **kw)
    return out


def landmark_scores_ref(lm: Landmarks, q: torch.Tensor, scaling: float, rule: str = "softmax_max",
                        bf16_probs: bool = False) -> torch.Tensor:
    """The torch reference (SparseLayer.select): dequantize, then the rule in fp32."""
    land = lm.dequantize()
    if rule == "mean_dot":
        return torch.matmul(q.float().mean(1, keepdim=True), land.transpose(1, 2)).squeeze(1)
    p = torch.softmax(torch.matmul(q.float(), land.transpose(1, 2)) * scaling, -1)
    if bf16_probs:
        p = p.to(torch.bfloat16).float()
    return p.max(1).values


def select_topk(score: torch.Tensor, n_sel: int, cand_ids: torch.Tensor | None, chunk: int) -> torch.Tensor:
    """Top n_sel chunks per row -> token positions (BH, n_sel * chunk) int64. cand_ids None: candidate i is chunk i."""
    top = topk_indices(score, n_sel)
    ids = top if cand_ids is None else torch.gather(cand_ids, 1, top).long()
    return ids if chunk == 1 else chunk_positions(ids, chunk)
