"""EDEN{p}-{n} grids: n points in R^p, MSE-optimal for N(0, I_p) inputs.

The committed grids (``grids/eden{p}-{n}.pt``, float32 (n, p)) are produced by
``scripts/make_grids.py`` with :func:`generate_grid` (stochastic Lloyd for p > 1,
exact Lloyd-Max for p = 1) and recorded in ``grids/manifest.json``.
"""
from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path

import torch

GRID_DIR = Path(__file__).parent / "grids"

# Per-dimension MSE on N(0, I_p): Monte Carlo of the published grids (p > 1),
# closed-form Lloyd-Max values (p = 1). A committed grid must be within 3% (or lower).
TARGET_MSE: dict[tuple[int, int], float] = {
    (1, 4): 0.1175,
    (1, 16): 0.009497,
    (2, 16): 0.108,
    (2, 64): 0.0297,
    (2, 256): 0.0078,
    (4, 16): 0.344,
    (4, 256): 0.0967,
    (6, 4096): 0.0915,
    (8, 16): 0.610,
    (8, 128): 0.378,
    (8, 256): 0.322,
    (8, 4096): 0.168,
    (16, 256): 0.581,
}

# Bound on the (rows x n) score matrix materialised by nearest_index (float32 elements):
# 16 MB on CPU (cache friendly), 256 MB on GPU (fewer launches).
_SCORE_ELEMS = {"cpu": 1 << 22, "cuda": 1 << 26}


def grid_path(p: int, n: int) -> Path:
    return GRID_DIR / f"eden{p}-{n}.pt"


def available_grids() -> list[tuple[int, int]]:
    """(p, n) of every grid file shipped in ``grids/``."""
    out = []
    for f in sorted(GRID_DIR.glob("eden*-*.pt")):
        p, n = f.stem[len("eden"):].split("-")
        out.append((int(p), int(n)))
    return sorted(out)


def known_grids() -> list[tuple[int, int]]:
    """(p, n) of every grid a spec may name: the project's set plus any extra committed file.

    Spec parsing validates against this list, not the files, so configs can be parsed before
    scripts/make_grids.py has run; a missing file fails when the quantizer is built.
    """
    return sorted(set(TARGET_MSE) | set(available_grids()))


def load_manifest() -> dict:
    path = GRID_DIR / "manifest.json"
    return json.loads(path.read_text()) if path.exists() else {}


@lru_cache(maxsize=None)
def _load_cpu(p: int, n: int) -> torch.Tensor:
    path = grid_path(p, n)
    if not path.exists():
        have = ", ".join(f"{a}-{b}" for a, b in available_grids()) or "none"
        raise ValueError(f"no committed grid EDEN{p}-{n} ({path}); available: {have}")
    grid = torch.load(path, map_location="cpu", weights_only=True).float().contiguous()
    if grid.shape != (n, p):
        raise ValueError(f"grid file {path} has shape {tuple(grid.shape)}, expected ({n}, {p})")
    return grid


@lru_cache(maxsize=None)
def _load_on(p: int, n: int, device: str) -> torch.Tensor:
    return _load_cpu(p, n).to(device)


def load_grid(p: int, n: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Committed EDEN{p}-{n} grid, (n, p) float32, cached per device. Do not modify it in place."""
    if device is None:
        return _load_cpu(p, n)
    return _load_on(p, n, str(torch.device(device)))


def nearest_index(y: torch.Tensor, grid: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
    """Index of the nearest grid point for every row.

    y: (B, p) float32, grid: (n, p) float32 -> (B,) int64.
    Uses argmax_k (2 y.g_k - |g_k|^2) == argmin_k |y - g_k|^2. Rows are processed in chunks so
    the (rows, n) score matrix stays bounded (64k x 1024 channels against 4096 points would
    otherwise need tens of GB).
    """
    n = grid.shape[0]
    if chunk is None:
        chunk = max(1, _SCORE_ELEMS.get(y.device.type, 1 << 24) // n)
    half_norm = 0.5 * (grid * grid).sum(1)  # argmax of (y.g - |g|^2/2), same argmax, one op fewer
    gt = grid.t().contiguous()
    out = torch.empty(y.shape[0], dtype=torch.long, device=y.device)
    for i in range(0, y.shape[0], chunk):
        scores = y[i : i + chunk] @ gt
        scores.sub_(half_norm)
        out[i : i + chunk] = scores.argmax(1)
    return out


def grid_mse(grid: torch.Tensor, samples: int = 1_000_000, seed: int = 12345, chunk: int = 1 << 16) -> float:
    """Per-dimension MSE of nearest-point rounding of `samples` fresh N(0, I_p) vectors."""
    grid = grid.float()
    n, p = grid.shape
    gen = torch.Generator(device="cpu").manual_seed(seed)
    total, done = 0.0, 0
    while done < samples:
        b = min(chunk, samples - done)
        x = torch.randn(b, p, generator=gen).to(grid.device)
        err = x - grid[nearest_index(x, grid)]
        total += float((err.double() ** 2).sum())
        done += b
    return total / (samples * p)


def lloyd_max_1d(n: int, iters: int = 20000, tol: float = 1e-13) -> torch.Tensor:
    """Exact Lloyd-Max quantizer of N(0, 1) with n levels, (n, 1) float32.

    Alternates thresholds = midpoints and levels = conditional means
    E[x | a < x < b] = (phi(a) - phi(b)) / (Phi(b) - Phi(a)), in float64.
    """
    levels = torch.linspace(-2.5, 2.5, n, dtype=torch.float64) * (1 + math.log2(n) / 4)
    inf = torch.tensor([math.inf], dtype=torch.float64)
    for _ in range(iters):
        edges = torch.cat([-inf, (levels[1:] + levels[:-1]) / 2, inf])
        a, b = edges[:-1], edges[1:]
        pdf = lambda t: torch.exp(-0.5 * t * t) / math.sqrt(2 * math.pi)  # noqa: E731; pdf(+-inf) = 0
        mass = torch.special.ndtr(b) - torch.special.ndtr(a)
        new = (pdf(a) - pdf(b)) / mass
        if float((new - levels).abs().max()) < tol:
            levels = new
            break
        levels = new
    return levels.float().unsqueeze(1)


def gamma_schedule(p: int, n: int, t: int, gamma0: float = 2.0) -> float:
    """Damped step gamma_t = gamma0 A / (A + gamma0 B t), A = 4 n^(1/p), B = pi^2 n^(-2/p)."""
    A = 4.0 * n ** (1.0 / p)
    B = math.pi**2 * n ** (-2.0 / p)
    return gamma0 * A / (A + gamma0 * B * t)


def generate_grid(
    p: int,
    n: int,
    steps: int,
    samples_per_step: int,
    seed: int = 0,
    device: torch.device | str | None = None,
    gamma0: float = 2.0,
    log_every: int = 0,
) -> torch.Tensor:
    """EDEN{p}-{n} grid by stochastic Lloyd (damped k-means on fresh N(0, I_p) samples).

    Each step draws `samples_per_step` fresh samples, assigns them to their nearest point and moves
    every point towards the mean of its cell: grid += gamma_t (cell_mean - grid), with
    :func:`gamma_schedule`. Empty cells are re-seeded at a fresh random sample (dead points are
    wasted codes). p = 1 uses the exact Lloyd-Max solution (steps/samples ignored).
    Deterministic for a given seed and device. Returns (n, p) float32 on CPU.
    """
    if p == 1:
        return lloyd_max_1d(n)
    device = torch.device(device or "cpu")
    gen = torch.Generator(device="cpu").manual_seed(seed)
    # Init: random Gaussian samples shrunk towards 0 (centroids have variance 1 - mse < 1).
    grid = (torch.randn(n, p, generator=gen) * 0.8).to(device)
    for t in range(steps):
        x = torch.randn(samples_per_step, p, generator=gen).to(device)
        idx = nearest_index(x, grid)
        sums = torch.zeros(n, p, dtype=torch.float64, device=device).index_add_(0, idx, x.double())
        counts = torch.bincount(idx, minlength=n).to(torch.float64)
        filled = counts > 0
        means = (sums[filled] / counts[filled, None]).float()
        gamma = gamma_schedule(p, n, t, gamma0)
        grid[filled] += gamma * (means - grid[filled])
        n_empty = int((~filled).sum())
        if n_empty:
            grid[~filled] = torch.randn(n_empty, p, generator=gen).to(device)
        if log_every and (t % log_every == 0 or t == steps - 1):
            mse = float(((x - grid[idx]) ** 2).mean())  # on this step's samples (pre-update assignment)
            print(f"  EDEN{p}-{n} step {t}/{steps} gamma={gamma:.4f} empty={n_empty} mse~{mse:.5f}", flush=True)
    return grid.float().cpu()
