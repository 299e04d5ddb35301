"""selection.topk_indices: the first k of a stable descending sort (ties to the lowest index), without the sort."""

import pytest
import torch

from shadowkv_lab.selection import topk_indices


def _stable(score, k):
    return torch.sort(score, dim=-1, descending=True, stable=True).indices[..., :k]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_topk_indices_is_a_stable_descending_sort_cut_to_k(dtype):
    g = torch.Generator().manual_seed(0)
    # few distinct values: most scores tie, as bf16 chunk probabilities do
    score = (torch.randint(0, 7, (3, 4, 500), generator=g).float() / 7 - 0.4).to(dtype)
    score[0, 0, :50] = -float("inf")  # padding
    score[1, 1, ::3] = -0.0  # -0.0 and +0.0 are equal in a sort
    score[1, 1, 1::3] = 0.0
    score[2, 2, :] = -1e-30 if dtype == torch.float32 else -1e-3  # negative values: larger magnitude ranks lower
    score[2, 2, 7] = -2e-30 if dtype == torch.float32 else -2e-3
    for k in (0, 1, 37, 256, 500):
        assert torch.equal(topk_indices(score, k), _stable(score, k)), (dtype, k)


def test_topk_indices_on_distinct_scores_is_torch_topk():
    score = torch.randn(2, 8, 1000, generator=torch.Generator().manual_seed(1))
    assert torch.equal(topk_indices(score, 64), torch.topk(score, 64).indices)


@pytest.mark.parametrize("n", [1, 300, 2048, 1 << 16, (1 << 16) + 5])
def test_bf16_scores_take_the_int32_key_and_pick_the_same(n):
    """bf16-valued scores (rounded probabilities, negatives, +-0, -inf padding) rank on a 32-bit key up to 2**16 a row
    and on the 64-bit key past it: the same indices in the same order as a stable descending sort."""
    g = torch.Generator().manual_seed(n)
    score = (torch.randint(0, 40, (2, 3, n), generator=g).float() / 97).to(torch.bfloat16).float()
    score[0, 0, : n // 3] = -float("inf")
    score[0, 1, ::2] = -score[0, 1, ::2]
    score[1, 0, ::3] = -0.0
    score[1, 2] = (torch.randn(n, generator=g) * 1e-30).to(torch.bfloat16).float()
    for k in {0, 1, min(n, 37), n // 2, n}:
        got = topk_indices(score, k, bf16_scores=True)
        assert torch.equal(got, topk_indices(score, k)), (n, k)
        assert torch.equal(got, _stable(score, k)), (n, k)
