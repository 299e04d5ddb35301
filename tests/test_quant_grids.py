"""EDEN grids: closed-form Lloyd-Max check, a fresh small regeneration, every committed grid."""
import math

import pytest
import torch

from shadowkv_lab.quant.grids import (
    TARGET_MSE,
    available_grids,
    generate_grid,
    grid_mse,
    load_grid,
    load_manifest,
    lloyd_max_1d,
    nearest_index,
)

REQUIRED = sorted(TARGET_MSE)


def _lloyd_max_exact_mse(levels: torch.Tensor) -> float:
    """Closed-form MSE of a 1-D quantizer at its centroid condition: 1 - sum_k P_k c_k^2."""
    c = levels.double().flatten()
    inf = torch.tensor([math.inf], dtype=torch.float64)
    edges = torch.cat([-inf, (c[1:] + c[:-1]) / 2, inf])
    mass = torch.special.ndtr(edges[1:]) - torch.special.ndtr(edges[:-1])
    return float(1 - (mass * c * c).sum())


@pytest.mark.parametrize("n", [4, 16])
def test_lloyd_max_closed_form(n):
    mse = _lloyd_max_exact_mse(lloyd_max_1d(n))
    assert mse == pytest.approx(TARGET_MSE[(1, n)], rel=2e-3)


def test_fresh_small_grid_reaches_target():
    torch.manual_seed(0)
    grid = generate_grid(2, 16, steps=60, samples_per_step=50_000, seed=7)
    assert grid.shape == (16, 2) and grid.dtype == torch.float32
    mse = grid_mse(grid, 200_000, seed=1)
    assert mse <= TARGET_MSE[(2, 16)] * 1.03


def test_generate_is_deterministic():
    a = generate_grid(4, 16, steps=5, samples_per_step=5_000, seed=3)
    b = generate_grid(4, 16, steps=5, samples_per_step=5_000, seed=3)
    assert torch.equal(a, b)


def test_untrained_grid_fails_the_check():
    # The committed-grid check below must be able to fail: a random grid is far off target.
    bad = torch.randn(256, 4, generator=torch.Generator().manual_seed(0))
    assert grid_mse(bad, 50_000) > TARGET_MSE[(4, 256)] * 1.3


def test_all_required_grids_committed():
    manifest = load_manifest()
    assert set(REQUIRED) <= set(available_grids())
    for p, n in REQUIRED:
        entry = manifest[f"eden{p}-{n}"]
        assert entry["p"] == p and entry["n"] == n
        assert entry["mse_per_dim"] <= TARGET_MSE[(p, n)] * 1.03, entry


@pytest.mark.parametrize("p,n", REQUIRED)
def test_committed_grid_mse(p, n):
    grid = load_grid(p, n)
    assert grid.shape == (n, p) and grid.dtype == torch.float32
    assert torch.isfinite(grid).all()
    assert len(torch.unique(grid, dim=0)) == n  # no duplicated (dead) points
    # Re-measured on fresh samples (seed unlike the manifest's). MC relative std at 2e5 samples is
    # <= ~0.5% (p = 1 tails), so 3% + 1% slack still fails an undertrained grid.
    mse = grid_mse(grid, 200_000, seed=2024)
    assert mse <= TARGET_MSE[(p, n)] * 1.04


def test_load_grid_cached_per_device():
    assert load_grid(2, 16) is load_grid(2, 16)
    assert load_grid(2, 16, "cpu").device.type == "cpu"


def test_nearest_index_chunking_matches_bruteforce():
    gen = torch.Generator().manual_seed(0)
    grid = torch.randn(300, 3, generator=gen)
    y = torch.randn(1000, 3, generator=gen)
    ref = torch.cdist(y.double(), grid.double()).argmin(1)
    for chunk in (1, 7, 128, None):
        assert torch.equal(nearest_index(y, grid, chunk=chunk), ref)
