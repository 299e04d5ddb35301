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
