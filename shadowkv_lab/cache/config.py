"""OffloadConfig: one validated dataclass describes one KV-cache method (ShadowKV, YAKV and every ablation)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field

KINDS = ("full", "offload")
SCORINGS = ("softmax_max", "mean_dot")
SELECTIONS = ("landmarks", "oracle")
SCORE_PRECISIONS = ("fp32", "bf16")
# How the landmark scores are computed: "dequantized" (the reference) scores landmarks dequantized to the model
# dtype; "codes" scores the HIGGS codes directly through per-query lookup tables (kernels/scoring_lut.py): the same
# q . l, in fp32 and without rounding the landmark to the model dtype, and no dequantized landmark is ever held.
LANDMARK_SCORINGS = ("dequantized", "codes")
NATIVE = "native"  # keep the model's own dtype: no rounding at all


def _check_format(field_name: str, spec: str) -> None:
    if spec == NATIVE:
        return
    from shadowkv_lab.quant import parse_format

    try:
        parse_format(spec)
    except ValueError as e:
        raise ValueError(f"OffloadConfig.{field_name}={spec!r} is not a valid format: {e}") from None


def _check_group(field_name: str, group) -> None:
    if group is None:
        return
    if not isinstance(group, int) or isinstance(group, bool) or group < 1 or group & (group - 1):
        raise ValueError(f"OffloadConfig.{field_name}={group!r}: must be None (automatic) or a power of two >= 1")


@dataclass(frozen=True)
class OffloadConfig:
    """A KV-cache offloading method in the family of ShadowKV (arXiv 2410.21465) and YAKV (arXiv 2604.08426).

    kind="full" is exact attention with nothing compressed; kind="offload" is the sparse method of
    docs/algorithms.md: exact prefill, then per decode step each KV head attends to outliers + local window +
    the `sparse_budget` tokens chosen by landmarks (or by the exact-attention oracle) + generated tokens.
    """

    name: str = "custom"
    kind: str = "offload"
    # keys: rank > 0 keeps U[:, :rank] and S V^T of the joint pre-RoPE key SVD; -1 keeps exact keys; a float in
    # (0, 1) is a share of H*d (160/1024 = 0.15625 is ShadowKV's share on Llama-3-8B), for comparing across models.
    rank: int | float = 160
    chunk_size: int = 8
    local_budget: int = 32  # local window W in tokens, multiple of chunk_size
    outlier_chunks: int = 48
    sparse_budget: int | float = 2048  # int: tokens; float in (0, 1]: fraction of the prompt
    scoring: str = "softmax_max"  # reference accuracy rule; "mean_dot" is the GPU serving rule
    score_precision: str = "bf16"  # the reference casts chunk probabilities to bf16 (ties!)
    selection: str = "landmarks"  # "oracle": top tokens by the exact attention of the current query
    landmark_format: str = NATIVE
    landmark_group: int | None = None  # None: head_dim (one Hadamard group per head)
    key_format: str = NATIVE  # storage of exact pre-RoPE keys (rank = -1)
    key_group: int | None = None  # None: all KV channels of a token (H*d) when a power of two
    # Offset removed from pre-RoPE keys before quantizing and added back before RoPE (cache/key_offset.py):
    # "none" (the paper), "mean", "bias" (the k_proj bias) or "selective" (the mean, only where it shrinks the row).
    key_offset: str = "none"
    # "mean": remove each landmark's share of the RoPE'd per-channel key mean before quantizing the landmark and
    # add it back when scoring (the landmark counterpart of key_offset="mean"); "none": the paper's landmarks.
    landmark_offset: str = "none"
    # "dequantized": score the landmarks dequantized to the model dtype (the reference); "codes": score HIGGS landmark
    # codes through per-query lookup tables, in fp32 and never dequantized on the GPU (LANDMARK_SCORINGS).
    landmark_scoring: str = "dequantized"
    value_format: str = NATIVE
    value_group: int | None = None
    keys_on_device: bool = False  # rank = -1: keep the (possibly quantized) keys on the GPU instead of offloading
    offload: bool = True  # on CUDA, put values (and keys) in pinned host memory; False keeps all on device
    description: str = field(default="", compare=False)

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"OffloadConfig.name={self.name!r}: must be a non-empty string")
        if self.kind not in KINDS:
            raise ValueError(f"OffloadConfig.kind={self.kind!r}: allowed {KINDS}")
        r = self.rank
        ok = (isinstance(r, int) and not isinstance(r, bool) and (r == -1 or r > 0)) or (isinstance(r, float) and 0.0 < r < 1.0)
        if not ok:
            raise ValueError(f"OffloadConfig.rank={r!r}: must be -1 (exact keys), a positive int, or a float share of H*d in (0, 1)")
        if not isinstance(self.chunk_size, int) or isinstance(self.chunk_size, bool) or self.chunk_size < 1:
            raise ValueError(f"OffloadConfig.chunk_size={self.chunk_size!r}: must be an int >= 1")
        if not isinstance(self.local_budget, int) or self.local_budget < 0 or self.local_budget % self.chunk_size:
            raise ValueError(
                f"OffloadConfig.local_budget={self.local_budget!r}: must be an int >= 0 and a multiple of chunk_size={self.chunk_size}"
            )
        if not isinstance(self.outlier_chunks, int) or isinstance(self.outlier_chunks, bool) or self.outlier_chunks < 0:
            raise ValueError(f"OffloadConfig.outlier_chunks={self.outlier_chunks!r}: must be an int >= 0")
        b = self.sparse_budget
        if isinstance(b, bool) or not isinstance(b, (int, float)):
            raise ValueError(f"OffloadConfig.sparse_budget={b!r}: int tokens >= 1 or float fraction in (0, 1]")
        if isinstance(b, int) and b < 1 or isinstance(b, float) and not (0.0 < b <= 1.0):
            raise ValueError(f"OffloadConfig.sparse_budget={b!r}: int tokens >= 1 or float fraction in (0, 1]")
        if self.scoring not in SCORINGS:
            raise ValueError(f"OffloadConfig.scoring={self.scoring!r}: allowed {SCORINGS}")
        if self.score_precision not in SCORE_PRECISIONS:
            raise ValueError(f"OffloadConfig.score_precision={self.score_precision!r}: allowed {SCORE_PRECISIONS}")
        if self.selection not in SELECTIONS:
            raise ValueError(f"OffloadConfig.selection={self.selection!r}: allowed {SELECTIONS}")
        for f in ("landmark_format", "key_format", "value_format"):
            _check_format(f, getattr(self, f))
        for f in ("landmark_group", "key_group", "value_group"):
            _check_group(f, getattr(self, f))
        from .key_offset import KEY_OFFSETS, LANDMARK_OFFSETS

        for what, allowed in (("key", KEY_OFFSETS), ("landmark", LANDMARK_OFFSETS)):
            rule, fmt = getattr(self, f"{what}_offset"), getattr(self, f"{what}_format")
            if rule not in allowed:
                raise ValueError(f"OffloadConfig.{what}_offset={rule!r}: allowed {allowed}")
            if rule != "none" and fmt == NATIVE:  # stored exactly: nothing to centre
                raise ValueError(f"OffloadConfig.{what}_offset={rule!r} needs quantized {what}s (a {what}_format "
                                 f"other than {NATIVE!r})")
        self._check_landmark_scoring()
        if self.key_format != NATIVE and self.rank != -1:
            raise ValueError(
                f"OffloadConfig.key_format={self.key_format!r} needs rank=-1 (stored exact keys); got rank={self.rank}"
            )

    def _check_landmark_scoring(self) -> None:
        """landmark_scoring="codes" scores HIGGS codes through a table of the rotated query: it needs HIGGS landmarks
        of one Hadamard group per head (group = head_dim), uint8 codes (n <= 256 grid points), no landmark offset
        (the table knows only the codes) and landmark selection (the oracle scores exact keys)."""
        v = self.landmark_scoring
        if v not in LANDMARK_SCORINGS:
            raise ValueError(f"OffloadConfig.landmark_scoring={v!r}: allowed {LANDMARK_SCORINGS}")
        if v != "codes":
            return
        why = None
        spec = None
        if self.landmark_format != NATIVE:
            from shadowkv_lab.quant import parse_format

            spec = parse_format(self.landmark_format)
        if spec is None or spec.kind != "higgs":
            why = f"a HIGGS landmark_format (higgs-{{p}}-{{n}}), got landmark_format={self.landmark_format!r}"
        elif spec.n > 256:
            why = f"uint8 codes (a grid of n <= 256 points), got landmark_format={self.landmark_format!r} (n = {spec.n})"
        elif self.landmark_group is not None:
            why = f"landmark_group=None (one Hadamard group per head), got landmark_group={self.landmark_group!r}"
        elif self.landmark_offset != "none":
            why = f"landmark_offset='none' (the table scores the codes alone), got landmark_offset={self.landmark_offset!r}"
        elif self.selection != "landmarks":
            why = f"selection='landmarks' (oracle selection scores exact keys), got selection={self.selection!r}"
        if why is not None:
            raise ValueError(f"OffloadConfig.landmark_scoring='codes' needs {why}")

    # ------------------------------------------------------------------ helpers
    def budget_tokens(self, prompt_len: int) -> int:
        """Sparse budget in tokens for a prompt of `prompt_len`, rounded down to whole chunks (docs/algorithms.md, "Prefill" step 6)."""
        c = self.chunk_size
        if isinstance(self.sparse_budget, float):
            return int(self.sparse_budget * prompt_len) // c * c
        return self.sparse_budget // c * c

    def rank_for(self, n_kv_heads: int, head_dim: int) -> int:
        """Resolved SVD rank for a model (-1 for exact keys; a share becomes round(share * H*d), at least 1)."""
        if isinstance(self.rank, float):
            return max(1, round(self.rank * n_kv_heads * head_dim))
        return self.rank

    def replace(self, **changes) -> "OffloadConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("description")
        # configs from before these fields keep their hash and rows: a field at its default is left out
        for f, default in (("key_offset", "none"), ("landmark_offset", "none"), ("landmark_scoring", "dequantized")):
            if d[f] == default:
                d.pop(f)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "OffloadConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown OffloadConfig fields {sorted(unknown)}; allowed {sorted(known)}")
        return cls(**d)

    def config_hash(self) -> str:
        """Stable hash of everything that changes results (the name is excluded: renaming does not rerun)."""
        d = self.to_dict()
        d.pop("name")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]
