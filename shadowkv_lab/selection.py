"""Top-k selection rules shared by the cache reference and the kernels (plain torch, no triton)."""

from __future__ import annotations

import torch


def chunk_positions(chunk_ids: torch.Tensor, c: int) -> torch.Tensor:
    """(..., n) chunk ids -> (..., n*c) token positions of those chunks, chunk by chunk."""
    return (chunk_ids.unsqueeze(-1) * c + torch.arange(c, device=chunk_ids.device)).flatten(-2)


def topk_indices(score: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k largest scores along the last dim, largest first; ties go to the lowest index. The
    reference's bf16 chunk probabilities tie often, and torch.topk breaks ties differently across devices and
    shapes; ranking on a key that holds the tie-break makes the per-row, stacked and kernel paths pick the same
    chunks whenever their scores agree.

    The key is one int64 per score: the float's bits mapped to an order-preserving integer (high 32 bits) above the
    reversed index (low 32 bits). Every key is distinct, so torch.topk's partial selection returns exactly the first
    k of a stable descending sort, without sorting the whole row (the cost of a full sort of 16k-chunk rows was a
    quarter of a decode step)."""
    n = score.shape[-1]
    bits = (score.float() + 0.0).view(torch.int32).to(torch.int64)  # + 0.0: -0.0 becomes +0.0, equal as in a sort
    bits = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits)  # negative floats: larger magnitude, smaller key
    key = bits * (1 << 32) + (n - 1 - torch.arange(n, device=score.device))
    return torch.topk(key, k, dim=-1).indices
