"""Top-k selection rules shared by the cache reference and the kernels (plain torch, no triton)."""

from __future__ import annotations

import torch


def chunk_positions(chunk_ids: torch.Tensor, c: int) -> torch.Tensor:
    """(..., n) chunk ids -> (..., n*c) token positions of those chunks, chunk by chunk."""
    return (chunk_ids.unsqueeze(-1) * c + torch.arange(c, device=chunk_ids.device)).flatten(-2)


def topk_indices(score: torch.Tensor, k: int, bf16_scores: bool = False) -> torch.Tensor:
    """Indices of the k largest scores along the last dim, largest first; ties go to the lowest index. The
    reference's bf16 chunk probabilities tie often, and torch.topk breaks ties differently across devices and
    shapes; ranking on a key that holds the tie-break makes the per-row, stacked and kernel paths pick the same
    chunks whenever their scores agree.

    The key is one integer per score: the float's bits mapped to an order-preserving integer above the reversed
    index. Every key is distinct, so torch.topk's partial selection returns exactly the first k of a stable
    descending sort, without sorting the whole row (the cost of a full sort of 16k-chunk rows was a quarter of a
    decode step). bf16_scores: the caller guarantees every score is a bf16 value (bf16-rounded probabilities, -inf
    padding), so 16 bits hold its order; with at most 2**16 scores a row the key then fits int32, whose radix
    selection takes half the passes of int64's (the selection was a third of a stacked decode step on an H100).
    The indices are the same either way."""
    n = score.shape[-1]
    bits = (score.float() + 0.0).view(torch.int32)  # + 0.0: -0.0 becomes +0.0, equal as in a sort
    if bf16_scores and n <= 1 << 16:
        bits = bits >> 16  # the bf16 pattern, sign-extended
        bits = torch.where(bits < 0, bits ^ 0x7FFF, bits)  # negative floats: larger magnitude, smaller key
        rev = (n - 1 - torch.arange(n, device=score.device, dtype=torch.int32))
        return torch.topk(bits * (1 << 16) + rev, k, dim=-1).indices
    bits = bits.to(torch.int64)
    bits = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits)
    key = bits * (1 << 32) + (n - 1 - torch.arange(n, device=score.device))
    return torch.topk(key, k, dim=-1).indices
