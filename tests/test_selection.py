"""selection.topk_indices: the first k of a stable descending sort (ties to the lowest index), without the sort; its
keys built by one Triton kernel (under the CPU interpreter unless TRITON_INTERPRET=0 on a CUDA machine)."""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from shadowkv_lab.selection import topk_indices  # noqa: E402

DEV = torch.device("cuda" if os.environ["TRITON_INTERPRET"] == "0" and torch.cuda.is_available() else "cpu")


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


@pytest.mark.parametrize("bf16", [True, False])
@pytest.mark.parametrize("n", [1, 1000, 2500, (1 << 16) + 5])
def test_the_fused_keys_are_rank_keys_bit_for_bit(bf16, n):
    """kernels.scoring.rank_keys_fused (one Triton kernel; the interpreter on a CPU) writes selection.rank_keys's keys:
    int32 for bf16 scores up to 2**16 a row, int64 past it or for fp32 scores; ±0, negatives, -inf and ties included."""
    from shadowkv_lab.kernels.scoring import rank_keys_fused
    from shadowkv_lab.selection import rank_keys

    g = torch.Generator().manual_seed(n)
    score = torch.randn(3, 2, n, generator=g) * torch.tensor([1.0, 1e-30, 1e4]).view(3, 1, 1)
    if bf16:
        score = score.to(torch.bfloat16).float()
    score = score.to(DEV)
    score[0, 0, ::4] = -float("inf")
    score[0, 1, ::5] = -0.0
    score[1, 0, ::3] = 0.0
    score[2, 1, : n // 2] = score[2, 1, 0]  # ties
    want = rank_keys(score, bf16)
    got = rank_keys_fused(score, bf16)
    assert got.dtype == want.dtype == (torch.int32 if bf16 and n <= 1 << 16 else torch.int64)
    assert torch.equal(got, want)
    assert torch.equal(topk_indices(score, min(n, 40), bf16, keys=rank_keys_fused), _stable(score, min(n, 40)))
