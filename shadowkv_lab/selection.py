"""Top-k selection rules shared by the cache reference and the kernels (plain torch, no triton)."""

from __future__ import annotations

import torch


def chunk_positions(chunk_ids: torch.Tensor, c: int) -> torch.Tensor:
    """(..., n) chunk ids -> (..., n*c) token positions of those chunks, chunk by chunk."""
    return (chunk_ids.unsqueeze(-1) * c + torch.arange(c, device=chunk_ids.device)).flatten(-2)


def topk_indices(score: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k largest scores along the last dim; ties go to the lowest index. The reference's bf16 chunk
    probabilities tie often, and torch.topk breaks ties differently across devices and shapes; a stable sort makes
    the per-row, stacked and kernel paths pick the same chunks whenever their scores agree."""
    return torch.sort(score, dim=-1, descending=True, stable=True).indices[..., :k]
