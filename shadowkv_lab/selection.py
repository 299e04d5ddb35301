"""Top-k selection rules shared by the cache reference and the kernels (plain torch, no triton)."""

from __future__ import annotations

import torch


def chunk_positions(chunk_ids: torch.Tensor, c: int, offsets: torch.Tensor | None = None) -> torch.Tensor:
    """(..., n) chunk ids -> (..., n*c) token positions of those chunks, chunk by chunk (chunk_ids itself when c is 1).
    offsets: arange(c) on chunk_ids' device, kept by a caller that runs every step (one kernel, not three)."""
    if c == 1:
        return chunk_ids
    offsets = torch.arange(c, device=chunk_ids.device) if offsets is None else offsets
    return torch.add(offsets, chunk_ids.unsqueeze(-1), alpha=c).flatten(-2)


def int32_keys(n: int, bf16_scores: bool) -> bool:
    """Whether rank_keys of n scores a row fit int32: bf16 values (16 bits of order) and at most 2**16 indices."""
    return bf16_scores and n <= 1 << 16


def rank_keys(score: torch.Tensor, bf16_scores: bool = False) -> torch.Tensor:
    """One distinct integer per score along the last dim, ordered as (score, -index): the float's bits mapped to an
    order-preserving integer above the reversed index. bf16_scores: the caller guarantees every score is a bf16 value
    (bf16-rounded probabilities, -inf padding), so 16 bits hold its order; with at most 2**16 scores a row the key then
    fits int32, else int64."""
    n = score.shape[-1]
    bits = (score.float() + 0.0).view(torch.int32)  # + 0.0: -0.0 becomes +0.0, equal as in a sort
    if int32_keys(n, bf16_scores):
        bits = bits >> 16  # the bf16 pattern, sign-extended
        bits = torch.where(bits < 0, bits ^ 0x7FFF, bits)  # negative floats: larger magnitude, smaller key
        return bits * (1 << 16) + (n - 1 - torch.arange(n, device=score.device, dtype=torch.int32))
    bits = bits.to(torch.int64)
    bits = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits)
    return bits * (1 << 32) + (n - 1 - torch.arange(n, device=score.device))


def topk_indices(score: torch.Tensor, k: int, bf16_scores: bool = False, keys=rank_keys) -> torch.Tensor:
    """Indices of the k largest scores along the last dim, largest first; ties go to the lowest index. The
    reference's bf16 chunk probabilities tie often, and torch.topk breaks ties differently across devices and
    shapes; ranking on a key that holds the tie-break makes the per-row, stacked and kernel paths pick the same
    chunks whenever their scores agree.

    Every key (rank_keys) is distinct, so torch.topk's partial selection returns exactly the first k of a stable
    descending sort, without sorting the whole row (the cost of a full sort of 16k-chunk rows was a quarter of a
    decode step). bf16_scores: as rank_keys; the 32-bit key's radix selection takes half the passes of the 64-bit
    one (the selection was a third of a stacked decode step on an H100), and the indices are the same. keys: the
    function that builds the keys (kernels.scoring.rank_keys_fused: the same keys in one kernel)."""
    return torch.topk(keys(score, bf16_scores), k, dim=-1).indices
