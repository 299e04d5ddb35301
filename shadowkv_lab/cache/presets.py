"""The study's methods as named OffloadConfig presets, plus builders for every ablation sweep.

Budgets are fractions of the prompt by default so that the same preset means the same thing at 4k and at
128k; ShadowKV's published 2048 tokens at 128k is 1.5625%.
"""

from __future__ import annotations

from .config import NATIVE, OffloadConfig

SHADOWKV_BUDGET = 0.015625  # 2048 / 131072
YAKV_BUDGET = 0.03125

# Landmark precisions of the study's ablation: name -> format spec (bits/dim before scales).
LANDMARK_PRECISIONS = {
    "bf16": "bf16",
    "fp8": "fp8",
    "nvfp4": "nvfp4",
    "higgs4": "higgs-2-256",  # 4 bits/dim
    "higgs3": "higgs-2-64",  # 3 bits/dim
    "higgs2": "higgs-4-256",  # 2 bits/dim (YAKV)
    "higgs1": "higgs-8-256",  # 1 bit/dim
}
RESIDUAL_LANDMARKS = "residual:m=2,main=higgs-4-256,res=higgs-16-256"  # about 1.5 bits/dim
KEY_FORMATS = {"exact": NATIVE, "fp8": "fp8", "nvfp4": "nvfp4", "higgs4": "higgs-2-256", "higgs2": "higgs-4-256"}


def _shadowkv(**kw) -> OffloadConfig:
    base = dict(
        kind="offload", rank=160, chunk_size=8, local_budget=32, outlier_chunks=48, sparse_budget=SHADOWKV_BUDGET,
        scoring="softmax_max", selection="landmarks",
    )
    base.update(kw)
    return OffloadConfig(**base)


def _yakv(**kw) -> OffloadConfig:
    base = dict(
        kind="offload", rank=-1, chunk_size=1, local_budget=64, outlier_chunks=0, sparse_budget=YAKV_BUDGET,
        scoring="softmax_max", selection="landmarks", landmark_format="higgs-4-256",
        key_format="higgs-2-256", value_format="higgs-2-256",
    )
    base.update(kw)
    return OffloadConfig(**base)


def landmark_precision(precision: str, chunk_size: int = 1, sparse_budget: int | float = YAKV_BUDGET) -> OffloadConfig:
    """Landmark-precision ablation: YAKV's layout with exact keys/values, only the landmark format varies."""
    if precision not in LANDMARK_PRECISIONS and precision != "residual":
        raise ValueError(f"landmark precision {precision!r} unknown; allowed {sorted(LANDMARK_PRECISIONS) + ['residual']}")
    fmt = RESIDUAL_LANDMARKS if precision == "residual" else LANDMARK_PRECISIONS[precision]
    return _yakv(
        name=f"lm_{precision}_c{chunk_size}", chunk_size=chunk_size, local_budget=64 // chunk_size * chunk_size or chunk_size,
        sparse_budget=sparse_budget, landmark_format=fmt, key_format=NATIVE, value_format=NATIVE,
        description=f"landmarks {fmt}, chunk {chunk_size}, exact keys and values",
    )


def chunk_size_ablation(chunk_size: int, sparse_budget: int | float = YAKV_BUDGET, landmark_format: str = "bf16") -> OffloadConfig:
    """Chunk-size ablation: exact keys, bf16 landmarks, no outliers; one landmark per `chunk_size` tokens."""
    return _yakv(
        name=f"chunk{chunk_size}", chunk_size=chunk_size, local_budget=max(64 // chunk_size, 1) * chunk_size,
        sparse_budget=sparse_budget, landmark_format=landmark_format, key_format=NATIVE, value_format=NATIVE,
        description=f"chunk size {chunk_size}, {landmark_format} landmarks, exact keys and values",
    )


def key_compression(keys: str | int, sparse_budget: int | float = SHADOWKV_BUDGET) -> OffloadConfig:
    """Key-compression ablation on ShadowKV: `keys` is an SVD rank (int) or one of KEY_FORMATS (rank -1)."""
    if isinstance(keys, int) and not isinstance(keys, bool):
        return _shadowkv(name=f"keys_rank{keys}", rank=keys, sparse_budget=sparse_budget, description=f"low-rank keys, rank {keys}")
    if keys not in KEY_FORMATS:
        raise ValueError(f"key compression {keys!r} unknown; allowed an int rank or {sorted(KEY_FORMATS)}")
    return _shadowkv(name=f"keys_{keys}", rank=-1, key_format=KEY_FORMATS[keys], sparse_budget=sparse_budget,
                     description=f"{keys} keys (no SVD)")


# ShadowKV's rank 160 of Llama-3-8B's H*d = 1024, as a share: what `shadowkv_scaled` and matched_rank keep.
SCALED_RANK_SHARE = 160 / 1024


def matched_rank(n_kv_heads: int, head_dim: int, ratio: float = SCALED_RANK_SHARE) -> int:
    """Rank giving the same share of H*d as ShadowKV's 160 of Llama-3-8B's 1024 (algorithms.md)."""
    return max(1, round(ratio * n_kv_heads * head_dim))


def with_budget(config: OffloadConfig, sparse_budget: int | float) -> OffloadConfig:
    """The same method at another sparse budget (name suffixed with the budget)."""
    tag = f"{sparse_budget:g}" if isinstance(sparse_budget, float) else f"{sparse_budget}t"
    return config.replace(name=f"{config.name}@{tag}", sparse_budget=sparse_budget)


PRESETS: dict[str, OffloadConfig] = {
    "full": OffloadConfig(name="full", kind="full", description="exact attention, nothing compressed (accuracy ceiling)"),
    "shadowkv": _shadowkv(name="shadowkv", description="ShadowKV: rank-160 keys, chunk-8 bf16 landmarks, 48 outlier chunks"),
    "shadowkv_scaled": _shadowkv(name="shadowkv_scaled", rank=SCALED_RANK_SHARE,
                                 description="ShadowKV with the rank scaled to 15.6% of H*d (160 of Llama-3-8B's 1024)"),
    "shadowkv_fullkeys": _shadowkv(name="shadowkv_fullkeys", rank=-1, description="ShadowKV with exact keys (isolates low rank)"),
    "shadowkv_oracle": _shadowkv(name="shadowkv_oracle", selection="oracle", description="rank-160 keys, oracle token selection"),
    "oracle": _shadowkv(name="oracle", rank=-1, selection="oracle", description="exact keys, oracle token selection (budget bound)"),
    "shadowkv_serving": _shadowkv(name="shadowkv_serving", scoring="mean_dot", description="ShadowKV with the group-mean dot scoring rule"),
    "yakv": _yakv(name="yakv", description="YAKV: chunk 1, exact keys, 2-bit HIGGS landmarks, 4-bit HIGGS keys and values"),
    "yakv_residual": _yakv(name="yakv_residual", landmark_format=RESIDUAL_LANDMARKS, description="YAKV with residual landmarks (~1.5 bits/dim)"),
    "yakv_exactkv": _yakv(name="yakv_exactkv", key_format=NATIVE, value_format=NATIVE, description="YAKV landmarks, exact keys and values"),
}
for _p in LANDMARK_PRECISIONS:
    _c = landmark_precision(_p)
    PRESETS[_c.name] = _c
PRESETS["lm_residual_c1"] = landmark_precision("residual")


def get_preset(name: str) -> OffloadConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}")
    return PRESETS[name]
