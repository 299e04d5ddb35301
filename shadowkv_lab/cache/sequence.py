"""SequenceCache: the cross-layer owner of one sequence's compressed KV cache (built from an exact prefill)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .config import OffloadConfig
from .layer import ExactLayer, LayerContext, build_layer
from .memory import MemoryReport
from .record import AttentionRecorder


@dataclass
class PrefillState:
    """Exact per-layer prompt KV of one sequence, captured once and shared by every method built from it.

    k_pre[l], v[l]: (H, L, d) pre-RoPE keys (after k_norm) and values; k_post[l]: (H, L, d) post-RoPE keys.
    first_logits: (vocab,) logits of the last prompt position (the first generated token is exact in every method).
    """

    input_ids: torch.Tensor  # (L,)
    k_pre: list[torch.Tensor]
    k_post: list[torch.Tensor]
    v: list[torch.Tensor]
    first_logits: torch.Tensor
    prefill_s: float = 0.0
    # Per-layer fp32 SVD of the pre-RoPE keys, computed by the first low-rank method built from this prefill and
    # reused by the others (the runner builds several methods from one prefill; the SVD is the costly part).
    svd: dict = field(default_factory=dict, repr=False)

    @property
    def prompt_len(self) -> int:
        return int(self.input_ids.shape[0])


class SequenceCache:
    """All layers of one sequence under one OffloadConfig; tracks the logical length (prompt + generated)."""

    def __init__(self, config: OffloadConfig, state: PrefillState, contexts: list[LayerContext], record: bool = False):
        self.config = config
        self.prompt_len = state.prompt_len
        self.generated = 0
        self.recorder = AttentionRecorder() if record and config.kind != "full" else None
        self.layers = [
            build_layer(config, state.k_pre[i], state.k_post[i], state.v[i], contexts[i], keep_exact=record,
                        svd_memo=(state.svd, i))
            for i in range(len(state.v))
        ]
        self.fallback = sorted({lay.reason for lay in self.layers if isinstance(lay, ExactLayer) and lay.reason != "full"})

    @property
    def position(self) -> int:
        """Absolute position of the next token fed to the model."""
        return self.prompt_len + self.generated

    def decode_layer(self, layer_idx: int, q, k_pre, k_post, v):
        """q: (Hq, d); k_pre, k_post, v: (H, d) -> (Hq, d)."""
        rec = self.recorder
        if rec is not None:
            rec.layer, rec.step = layer_idx, self.generated
        return self.layers[layer_idx].decode(q, k_pre, k_post, v, recorder=rec)

    def advance(self) -> None:
        self.generated += 1

    def memory_report(self) -> MemoryReport:
        rep = MemoryReport(prompt_len=self.prompt_len, n_layers=len(self.layers))
        for i, lay in enumerate(self.layers):
            for cat, role, st, pk in lay.memory():
                rep.rows.append((i, cat, role, st, pk))
        return rep
