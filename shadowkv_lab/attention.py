"""Hooking our cache into Hugging Face models: a replacement forward for each attention module.

We own the whole attention step (projections, q/k-norm, RoPE, cache, attention) instead of going through
`Cache.update`, because ShadowKV needs the *pre-RoPE* keys (after k_norm on Qwen3) and a custom decode-time
attention. Outside a session the original forward runs unchanged, so a patched model still works with
Hugging Face `generate`.
"""

from __future__ import annotations

import contextlib
import threading
import types

import torch
import torch.nn.functional as F

from .cache.layer import LayerContext
from .models import check_architecture

_ACTIVE = threading.local()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


def attention_modules(model) -> list[torch.nn.Module]:
    mods = [m for m in model.modules() if all(hasattr(m, a) for a in ("q_proj", "k_proj", "v_proj", "o_proj", "layer_idx"))]
    if not mods:
        raise ValueError(f"no attention modules with q/k/v/o projections found in {type(model).__name__}")
    return sorted(mods, key=lambda m: m.layer_idx)


def rotary_module(model) -> torch.nn.Module:
    inner = getattr(model, "model", model)
    rot = getattr(inner, "rotary_emb", None)
    if rot is None:
        raise ValueError(f"{type(model).__name__} has no rotary_emb module; only rotary models are supported")
    return rot


def make_rope(model):
    """RoPE at arbitrary absolute positions with the model's own rotary module (llama3 / YaRN scaling included)."""
    rot = rotary_module(model)

    def rope(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """x: (H, k, d); positions: (H, k) -> rotated x."""
        H, k, d = x.shape
        cos, sin = rot(x, positions.reshape(1, -1).to(x.device))
        cos, sin = cos.view(H, k, d), sin.view(H, k, d)
        return x * cos + rotate_half(x) * sin

    rope.freq_key = rope_freq_key(rot)
    return rope


def rope_freq_key(rot) -> tuple | None:
    """What fixes a rotary module's cos/sin at every position: its rope type, inverse frequencies and attention
    scaling (kernels.common.rope_table caches its tables under this key). None for rope types whose frequencies
    change with the sequence length ("dynamic"): their tables are never cached."""
    kind = str(getattr(rot, "rope_type", "default"))
    inv = getattr(rot, "inv_freq", None)
    if inv is None or "dynamic" in kind:
        return None
    return kind, tuple(inv.detach().float().cpu().tolist()), float(getattr(rot, "attention_scaling", 1.0))


def layer_contexts(model) -> list[LayerContext]:
    """One LayerContext per decoder layer (cached on the model)."""
    ctxs = getattr(model, "_skv_contexts", None)
    if ctxs is not None:
        return ctxs
    patch_model(model)
    device = next(model.parameters()).device
    rope = make_rope(model)
    n_q = model.config.num_attention_heads
    on_cuda = device.type == "cuda"
    ctxs = [
        LayerContext(rope=rope, scaling=float(m.scaling), n_q_heads=n_q, compute_device=device,
                     offload_device=torch.device("cpu"), pin=on_cuda, k_bias=_k_bias(m))
        for m in attention_modules(model)
    ]
    model._skv_contexts = ctxs
    return ctxs


def _k_bias(module) -> torch.Tensor | None:
    """The k_proj bias as the pre-RoPE keys see it, (H*d,), or None: absent, or followed by a k_norm (Qwen3), after
    which it is no constant offset of the keys."""
    bias = getattr(module.k_proj, "bias", None)
    if bias is None or getattr(module, "k_norm", None) is not None:
        return None
    return bias.detach()


def _project(self, hidden_states: torch.Tensor):
    """-> q (B, Hq, T, d) and pre-RoPE k, v (B, H, T, d), with q/k-norm where the model has it (Qwen3)."""
    B, T, _ = hidden_states.shape
    shape = (B, T, -1, self.head_dim)
    q = self.q_proj(hidden_states).view(shape)
    k = self.k_proj(hidden_states).view(shape)
    v = self.v_proj(hidden_states).view(shape)
    if getattr(self, "q_norm", None) is not None:
        q = self.q_norm(q)
    if getattr(self, "k_norm", None) is not None:
        k = self.k_norm(k)
    return q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)


def _forward(self, hidden_states, position_embeddings=None, attention_mask=None, *args, **kwargs):
    session = getattr(_ACTIVE, "session", None)
    if session is None:
        return self._skv_orig_forward(hidden_states, position_embeddings, attention_mask, *args, **kwargs)
    q, k_pre, v = _project(self, hidden_states)
    cos, sin = position_embeddings
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    q = q * cos + rotate_half(q) * sin
    k_post = k_pre * cos + rotate_half(k_pre) * sin
    B, T = hidden_states.shape[:2]
    if session.mode == "prefill":
        # Exact causal attention over the prompt; every method's prefill output is exact.
        out = F.scaled_dot_product_attention(q, k_post, v, is_causal=True, scale=self.scaling, enable_gqa=True)
        session.capture(self.layer_idx, k_pre, k_post, v)
        if hasattr(session, "capture_queries"):  # diagnostics (key_diagnostics.py) also need the prompt's queries
            session.capture_queries(self.layer_idx, q)
    else:
        if T != 1:
            raise ValueError(f"decode steps take one token per sequence, got {T}")
        out = session.decode_layer(self.layer_idx, q[:, :, 0], k_pre[:, :, 0], k_post[:, :, 0], v[:, :, 0]).unsqueeze(2)
    out = out.transpose(1, 2).reshape(B, T, -1)
    return self.o_proj(out), None


def patch_model(model) -> None:
    """Idempotently route every attention module through `_forward` (a no-op outside a session)."""
    if getattr(model, "_skv_patched", False):
        return
    check_architecture(model.config)
    for m in attention_modules(model):
        m._skv_orig_forward = m.forward
        m.forward = types.MethodType(_forward, m)
    model._skv_patched = True


class PrefillCapture:
    mode = "prefill"

    def __init__(self, n_layers: int):
        self.k_pre = [None] * n_layers
        self.k_post = [None] * n_layers
        self.v = [None] * n_layers

    def capture(self, layer_idx, k_pre, k_post, v):
        if k_pre.shape[0] != 1:
            raise ValueError("prefill captures one sequence at a time")
        self.k_pre[layer_idx] = k_pre[0].contiguous()
        self.k_post[layer_idx] = k_post[0].contiguous()
        self.v[layer_idx] = v[0].contiguous()


def decode_forward(model, ids: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """One decode step of the decoder stack, ids and pos (B, 1) -> last-position logits (B, vocab): the model's own
    modules in the order its forward calls them (embeddings, rotary, decoder layers, final norm, LM head), without the
    mask and cache machinery a one-token step under our session does not use. Nothing here synchronises the host, so
    a step can be captured in a CUDA graph; on the supported architectures the logits equal model(...)'s bit for bit
    (tests/test_generation_step.py)."""
    inner = model.model
    h = inner.embed_tokens(ids)
    pe = inner.rotary_emb(h, pos)
    for layer in inner.layers[: model.config.num_hidden_layers]:
        out = layer(h, attention_mask=None, position_ids=pos, position_embeddings=pe)
        h = out[0] if isinstance(out, tuple) else out
    return model.lm_head(inner.norm(h)[:, -1])


class DecodeBatch:
    """The per-row reference decode session: each row's cache runs its own layer step (see cache.batched for the
    stacked one)."""

    mode = "decode"

    def __init__(self, caches):
        self.caches = caches

    def decode_layer(self, layer_idx: int, q, k_pre, k_post, v) -> torch.Tensor:
        """q: (B, Hq, d); k_pre, k_post, v: (B, H, d) -> (B, Hq, d)."""
        return torch.stack([cache.decode_layer(layer_idx, q[b], k_pre[b], k_post[b], v[b]) for b, cache in enumerate(self.caches)])


@contextlib.contextmanager
def session(obj):
    prev = getattr(_ACTIVE, "session", None)
    _ACTIVE.session = obj
    try:
        yield obj
    finally:
        _ACTIVE.session = prev


__all__ = ["patch_model", "layer_contexts", "session", "PrefillCapture", "DecodeBatch", "decode_forward", "make_rope"]
