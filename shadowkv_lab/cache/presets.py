"""The study's methods as named OffloadConfig presets, the one method registry (`resolve`), and builders for every
ablation sweep (docs/methods.md has each preset's provenance).

Budgets are fractions of the prompt by default so that the same preset means the same thing at 4k and at
128k; ShadowKV's published 2048 tokens at 128k is 1.5625%.

A sweep builder returns `variant(base preset, **changes)`: a config whose display name is the base preset's name plus
one tag per field that differs from it (`variant_name`), e.g. `shadowkv_r64`, `yakv_exactkv_c4_lm-bf16`,
`yakv@0.0625`. Names are for display only: the results store keys a method by `config_hash`, which excludes the name.
"""

from __future__ import annotations

import dataclasses

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
# The offset rules of the *_centred presets, chosen by measurement (benchmarks/key_offset.py, docs/key_offset.md).
KEY_OFFSET = "selective"
LANDMARK_OFFSET = "mean"
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


def resolve(method: str | OffloadConfig) -> OffloadConfig:
    """The one method registry: a preset name -> its OffloadConfig; an OffloadConfig -> itself. Every entry point
    (generate, the runner, the CLI, the workbook) resolves methods here. Unknown names raise listing the presets."""
    if isinstance(method, OffloadConfig):
        return method
    if not isinstance(method, str):
        raise TypeError(f"a method is a preset name or an OffloadConfig, got {type(method).__name__}")
    base, at, budget = method.partition("@")
    if base not in PRESETS:
        raise ValueError(f"unknown method {method!r}; known presets: {', '.join(PRESETS)} (optionally with a budget, "
                         "e.g. shadowkv@0.03125 for a fraction of the prompt or shadowkv@2048t for tokens)")
    if not at:
        return PRESETS[base]
    return with_budget(PRESETS[base], _parse_budget(method, budget))


def _parse_budget(method: str, tag: str) -> int | float:
    """The budget of a derived name `<preset>@<tag>` (_budget_tag's format): `<fraction>` or `<tokens>t`."""
    try:
        return int(tag[:-1]) if tag.endswith("t") else float(tag)
    except ValueError:
        raise ValueError(f"method {method!r}: budget {tag!r} must be a fraction in (0, 1] (e.g. 0.03125) or a token "
                         "count with a t (e.g. 2048t)") from None


get_preset = resolve  # the public name of the README's examples


# ------------------------------------------------------------------------------------------ derived names
def _budget_tag(b: int | float) -> str:
    return f"@{b:g}" if isinstance(b, float) else f"@{b}t"


def _format_alias(spec: str, aliases: dict[str, str]) -> str:
    inverse = {v: k for k, v in aliases.items()}
    return "residual" if spec == RESIDUAL_LANDMARKS else inverse.get(spec, spec)


def _rank_tag(r) -> str:
    if r == -1:
        return "fullkeys"
    if r == SCALED_RANK_SHARE:
        return "scaled"
    return f"r{r:g}" if isinstance(r, float) else f"r{r}"


# field -> tag of its value in a derived name; any other field is tagged "<field>=<value>".
_TAGS = {
    "rank": _rank_tag,
    "chunk_size": lambda v: f"c{v}",
    "local_budget": lambda v: f"w{v}",
    "outlier_chunks": lambda v: f"o{v}",
    "scoring": lambda v: v.replace("_", ""),
    "score_precision": lambda v: f"score-{v}",
    "selection": lambda v: v,
    "landmark_format": lambda v: f"lm-{_format_alias(v, LANDMARK_PRECISIONS)}",
    "landmark_scoring": lambda v: "lut" if v == "codes" else "lm-dequantized",
    "key_format": lambda v: f"k-{_format_alias(v, KEY_FORMATS)}",
    "key_offset": lambda v: "k-centred" if v == KEY_OFFSET else f"k-offset-{v}",
    "value_format": lambda v: f"v-{_format_alias(v, KEY_FORMATS)}",
    "keys_on_device": lambda v: "keys-on-device" if v else "keys-offloaded",
    "offload": lambda v: "offload" if v else "on-device",
}


def variant_name(base: str | OffloadConfig, config: OffloadConfig) -> str:
    """Display name of `config` as a variant of `base`: base's name, then one tag per result-changing field that
    differs (in field order, `_` joined), the sparse budget last as `@<fraction>` or `@<tokens>t`. Fields that
    only follow from another one (local_budget when it is the chunk size's default) are still tagged when they
    differ, so the name never hides a difference."""
    b = resolve(base)
    # every field, those to_dict leaves out at their default included (a variant may set or reset them)
    want, have = dataclasses.asdict(config), dataclasses.asdict(b)
    tags = [(_TAGS.get(k) or (lambda v, k=k: f"{k}={v}"))(v) for k, v in want.items()
            if k not in ("name", "description", "sparse_budget") and v != have[k]]
    if want["sparse_budget"] != have["sparse_budget"]:
        budget = _budget_tag(config.sparse_budget)
    else:
        budget = ""
    return "_".join([b.name, *tags]) + budget


def variant(base: str | OffloadConfig, name: str | None = None, **changes) -> OffloadConfig:
    """`base` (a preset name or config) with `changes`, named by variant_name unless `name` is given."""
    b = resolve(base)
    cfg = b.replace(**changes)
    return cfg.replace(name=name or variant_name(b, cfg))


def landmark_precision(precision: str, chunk_size: int = 1, sparse_budget: int | float = YAKV_BUDGET,
                       name: str | None = None) -> OffloadConfig:
    """Landmark-precision ablation: YAKV's layout with exact keys/values (`yakv_exactkv`), only the landmark format
    (and optionally the chunk size) varies. name: None derives it from the changed fields (variant_name)."""
    if precision not in LANDMARK_PRECISIONS and precision != "residual":
        raise ValueError(f"landmark precision {precision!r} unknown; allowed {sorted(LANDMARK_PRECISIONS) + ['residual']}")
    fmt = RESIDUAL_LANDMARKS if precision == "residual" else LANDMARK_PRECISIONS[precision]
    return variant("yakv_exactkv", name=name, chunk_size=chunk_size, local_budget=64 // chunk_size * chunk_size or chunk_size,
                   sparse_budget=sparse_budget, landmark_format=fmt,
                   description=f"landmarks {fmt}, chunk {chunk_size}, exact keys and values")


def chunk_size_ablation(chunk_size: int, sparse_budget: int | float = YAKV_BUDGET, landmark_format: str = "bf16") -> OffloadConfig:
    """Chunk-size ablation on `yakv_exactkv`: exact keys, bf16 landmarks, no outliers; one landmark per `chunk_size`
    tokens."""
    return variant("yakv_exactkv", chunk_size=chunk_size, local_budget=max(64 // chunk_size, 1) * chunk_size,
                   sparse_budget=sparse_budget, landmark_format=landmark_format,
                   description=f"chunk size {chunk_size}, {landmark_format} landmarks, exact keys and values")


def key_compression(keys: str | int, sparse_budget: int | float = SHADOWKV_BUDGET) -> OffloadConfig:
    """Key-compression ablation on ShadowKV: `keys` is an SVD rank (int, on `shadowkv`), one of KEY_FORMATS (on
    `shadowkv_fullkeys`, rank -1), or a quantized format with `_centred` (the keys' offset removed before quantizing,
    KEY_OFFSET: what quantized keys need on a model with a k_proj bias, docs/key_offset.md)."""
    if isinstance(keys, int) and not isinstance(keys, bool):
        return variant("shadowkv", rank=keys, sparse_budget=sparse_budget, description=f"low-rank keys, rank {keys}")
    fmt = keys.removesuffix("_centred") if isinstance(keys, str) else keys
    if fmt not in KEY_FORMATS or (fmt == "exact" and keys != fmt):
        allowed = sorted(KEY_FORMATS) + [f"{k}_centred" for k in sorted(KEY_FORMATS) if k != "exact"]
        raise ValueError(f"key compression {keys!r} unknown; allowed an int rank or {allowed}")
    centred = {"key_offset": KEY_OFFSET} if keys != fmt else {}
    return variant("shadowkv_fullkeys", key_format=KEY_FORMATS[fmt], sparse_budget=sparse_budget, **centred,
                   description=f"{fmt} keys (no SVD)" + (", offset removed before quantizing" if centred else ""))


# ShadowKV's rank 160 of Llama-3-8B's H*d = 1024, as a share: what `shadowkv_scaled` and matched_rank keep.
SCALED_RANK_SHARE = 160 / 1024


def matched_rank(n_kv_heads: int, head_dim: int, ratio: float = SCALED_RANK_SHARE) -> int:
    """Rank giving the same share of H*d as ShadowKV's 160 of Llama-3-8B's 1024 (docs/methods.md)."""
    return max(1, round(ratio * n_kv_heads * head_dim))


def with_budget(config: OffloadConfig, sparse_budget: int | float) -> OffloadConfig:
    """The same method at another sparse budget (name suffixed with the budget, e.g. `yakv@0.0625`)."""
    return config.replace(name=f"{config.name}{_budget_tag(sparse_budget)}", sparse_budget=sparse_budget)


PRESETS: dict[str, OffloadConfig] = {
    "full": OffloadConfig(name="full", kind="full", description="exact attention, nothing compressed (accuracy ceiling)"),
    "shadowkv": _shadowkv(name="shadowkv", description="ShadowKV: rank-160 keys, chunk-8 bf16 landmarks, 48 outlier chunks"),
    "shadowkv_scaled": _shadowkv(name="shadowkv_scaled", rank=SCALED_RANK_SHARE,
                                 description="ShadowKV with the rank scaled to 15.6% of H*d (160 of Llama-3-8B's 1024)"),
    "shadowkv_fullkeys": _shadowkv(name="shadowkv_fullkeys", rank=-1, description="ShadowKV with exact keys (isolates low rank)"),
    "shadowkv_oracle": _shadowkv(name="shadowkv_oracle", selection="oracle", description="rank-160 keys, oracle token selection"),
    "oracle": _shadowkv(name="oracle", rank=-1, selection="oracle", description="exact keys, oracle token selection (budget bound)"),
    "shadowkv_serving": _shadowkv(name="shadowkv_serving", scoring="mean_dot", description="ShadowKV with the group-mean dot scoring rule"),
    "yakv": _yakv(name="yakv", description="YAKV as published: chunk 1, 2-bit HIGGS landmarks, 4-bit HIGGS keys and values"),
    "yakv_residual": _yakv(name="yakv_residual", landmark_format=RESIDUAL_LANDMARKS, description="YAKV with residual landmarks (~1.5 bits/dim)"),
    # YAKV's recipe with the keys' constant offset removed before quantizing (keys: selective per-token mean;
    # landmarks: the RoPE'd mean): what makes 4-bit HIGGS keys work on models whose keys carry a k_proj bias
    # (Qwen2.5); the paper's models (Llama 3.x, Qwen3) have none. docs/key_offset.md has the measurements.
    "yakv_centred": _yakv(name="yakv_centred", key_offset=KEY_OFFSET, landmark_offset=LANDMARK_OFFSET,
                          description="YAKV with centred keys and landmarks (survives a k_proj key bias)"),
    "yakv_centred_keys": _yakv(name="yakv_centred_keys", key_offset=KEY_OFFSET,
                               description="YAKV with centred keys, landmarks as published"),
    "yakv_residual_centred": _yakv(name="yakv_residual_centred", landmark_format=RESIDUAL_LANDMARKS, key_offset=KEY_OFFSET,
                                   landmark_offset=LANDMARK_OFFSET,
                                   description="YAKV with residual landmarks, centred keys and landmarks"),
    "yakv_exactkv": _yakv(name="yakv_exactkv", key_format=NATIVE, value_format=NATIVE, description="YAKV landmarks, exact keys and values"),
    # YAKV scoring its 2-bit HIGGS landmarks from the codes through per-query lookup tables: the GPU holds the codes
    # only, never a dequantized copy; the same q . l in fp32, without the reference's bf16 rounding of each landmark.
    "yakv_lut": _yakv(name="yakv_lut", landmark_scoring="codes",
                      description="YAKV scoring the 2-bit HIGGS landmark codes through per-query lookup tables"),
    "yakv_centred_keys_lut": _yakv(name="yakv_centred_keys_lut", key_offset=KEY_OFFSET, landmark_scoring="codes",
                                   description="YAKV with centred keys, landmark codes scored through lookup tables"),
}
for _p in [*LANDMARK_PRECISIONS, "residual"]:  # the landmark-precision ablation's presets keep their published names
    PRESETS[f"lm_{_p}_c1"] = landmark_precision(_p, name=f"lm_{_p}_c1")
