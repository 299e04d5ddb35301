"""Per-layer key diagnostics on a real prompt: how large the keys' constant offset is, and what a key or landmark
format does to attention once the offset is (or is not) removed.

    rows = key_statistics(model, tok, prompt)                     # one row per layer and KV head
    rows = key_attention_error(model, tok, prompt, {"higgs4": "higgs-2-256"})
    rows = landmark_selection(model, tok, prompt, {"higgs2": "higgs-4-256"})

Every function returns tidy rows (a list of dicts; `pandas.DataFrame(rows)` reads them). The attention error is
measured at the prompt's last `n_queries` positions: exact causal attention over the exact post-RoPE keys against
the same attention over keys stored in a format (dequantized, offset added back, then RoPE), per query head:
total-variation distance of the two distributions and relative error of the attention output.

Shapes: H KV heads, G query heads per KV head, d head dim, P prompt tokens, n queries.
"""

from __future__ import annotations

import torch

from .attention import PrefillCapture, layer_contexts
from .cache.config import NATIVE
from .cache.key_offset import KEY_OFFSETS, fit_offset
from .cache.stores import RowStore
from .selection import topk_indices

DEFAULT_KEY_FORMATS = {"higgs4": "higgs-2-256", "fp8": "fp8", "nvfp4": "nvfp4"}
DEFAULT_LANDMARK_FORMATS = {"bf16": NATIVE, "higgs2": "higgs-4-256"}


class _QueryCapture(PrefillCapture):
    """Prefill capture that also keeps the last n post-RoPE queries of every layer, (Hq, n, d)."""

    def __init__(self, n_layers: int, n_queries: int):
        super().__init__(n_layers)
        self.n = n_queries
        self.q = [None] * n_layers

    def capture_queries(self, layer_idx, q):
        self.q[layer_idx] = q[0, :, -self.n :].contiguous()


@torch.inference_mode()
def capture_prompt(model, tok, prompt: str | torch.Tensor, n_queries: int = 64) -> _QueryCapture:
    """Exact prefill of `prompt` (text, encoded with the chat template as the runs do, or token ids (P,)) keeping
    pre/post-RoPE keys, values and the last `n_queries` queries of every layer."""
    from .generation import encode_prompt, prefill_forward

    ids = prompt if isinstance(prompt, torch.Tensor) else encode_prompt(tok, prompt)
    if ids.numel() <= n_queries:
        raise ValueError(f"prompt of {ids.numel()} tokens: need more than n_queries={n_queries}")
    cap = _QueryCapture(len(layer_contexts(model)), n_queries)
    prefill_forward(model, ids, cap)
    return cap


def key_statistics(model, tok, prompt, cap: _QueryCapture | None = None) -> list[dict]:
    """Per layer and KV head: mean |k| of the pre-RoPE prompt keys, mean |k - mu| (mu the per-channel mean), |mu|,
    the k_proj bias norm (NaN without a bias), and the share of tokens the selective offset centres."""
    cap = cap or capture_prompt(model, tok, prompt)
    rows = []
    for layer, (k, ctx) in enumerate(zip(cap.k_pre, layer_contexts(model))):
        k = k.float()  # (H, P, d)
        mu = k.mean(dim=1, keepdim=True)
        bias = ctx.k_bias.float().view(k.shape[0], -1).cpu() if ctx.k_bias is not None else None
        centred_tok = (k - mu).transpose(0, 1).flatten(1).norm(dim=-1) < k.transpose(0, 1).flatten(1).norm(dim=-1)
        for h in range(k.shape[0]):
            kn, cn = k[h].norm(dim=-1), (k[h] - mu[h]).norm(dim=-1)
            rows.append({
                "layer": layer, "kv_head": h, "key_norm": kn.mean().item(), "centred_norm": cn.mean().item(),
                "mean_norm": mu[h].norm().item(), "offset_ratio": (kn.mean() / cn.mean()).item(),
                "bias_norm": bias[h].norm().item() if bias is not None else float("nan"),
                "selective_share": centred_tok.float().mean().item(),
            })
    return rows


def _attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scaling: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Causal attention of the last n queries: q (H, G, n, d), k/v (H, P, d) -> probs (H, G, n, P), out (H, G, n, d)."""
    n, P = q.shape[2], k.shape[1]
    s = torch.matmul(q.float(), k.float().transpose(-1, -2).unsqueeze(1)) * scaling
    future = torch.arange(P).view(1, P) > torch.arange(P - n, P).view(n, 1)
    p = torch.softmax(s.masked_fill(future.to(s.device), float("-inf")), dim=-1)
    return p, torch.matmul(p, v.float().unsqueeze(1))


def stored_keys(k_pre: torch.Tensor, fmt: str, offset: str, ctx, group: int | None = None) -> torch.Tensor:
    """Pre-RoPE keys (H, P, d) as a key RowStore of `fmt` hands them back (offset removed, quantized, restored)."""
    H, P, _ = k_pre.shape
    dev = k_pre.device
    store = RowStore(k_pre, fmt, group, dev, dev, False, offset=offset, bias=ctx.k_bias)
    return store.gather(torch.arange(P, device=dev).expand(H, P))


def key_attention_error(model, tok, prompt, formats: dict[str, str] | None = None, offsets=KEY_OFFSETS,
                        n_queries: int = 64, cap: _QueryCapture | None = None) -> list[dict]:
    """Per layer, format and key-offset rule: mean TV distance and relative output error of the attention of the
    last `n_queries` prompt positions over keys stored in that format (values exact), against exact keys."""
    formats = formats or DEFAULT_KEY_FORMATS
    cap = cap or capture_prompt(model, tok, prompt, n_queries)
    rows = []
    for layer, ctx in enumerate(layer_contexts(model)):
        k_pre, k_post, v, q = cap.k_pre[layer], cap.k_post[layer], cap.v[layer], cap.q[layer]
        H, P, d = k_post.shape
        qg = q.view(H, -1, q.shape[1], d)
        p0, o0 = _attention(qg, k_post, v, ctx.scaling)
        pos = torch.arange(P, device=k_pre.device).expand(H, P)
        for fname, fmt in formats.items():
            for rule in offsets:
                k = ctx.rope(stored_keys(k_pre, fmt, rule, ctx), pos)
                p1, o1 = _attention(qg, k, v, ctx.scaling)
                tv = 0.5 * (p1 - p0).abs().sum(-1)
                err = (o1 - o0).norm(dim=-1) / o0.norm(dim=-1).clamp_min(1e-12)
                rows.append({"layer": layer, "format": fname, "spec": fmt, "key_offset": rule,
                             "tv": tv.mean().item(), "tv_max": tv.max().item(), "out_err": err.mean().item()})
    return rows


def landmark_selection(model, tok, prompt, formats: dict[str, str] | None = None, budget: float = 0.03125,
                       n_queries: int = 64, cap: _QueryCapture | None = None) -> list[dict]:
    """Per layer and landmark format, chunk size 1 (YAKV): for the last `n_queries` positions, the share of the
    exact attention mass (mean over query heads) on the `budget` share of earlier tokens that the landmarks select
    (softmax over the GQA group, max), and the recall of the oracle's selection (top tokens by exact attention).

    Each format is measured raw and "centred": the RoPE'd per-channel mean R_t(mu) is removed from each landmark
    before quantizing and added back (exactly) when scoring, the landmark counterpart of the key offset."""
    formats = formats or DEFAULT_LANDMARK_FORMATS
    cap = cap or capture_prompt(model, tok, prompt, n_queries)
    rows = []
    for layer, ctx in enumerate(layer_contexts(model)):
        k_pre, k_post, q = cap.k_pre[layer], cap.k_post[layer], cap.q[layer]
        H, P, d = k_post.shape
        n = q.shape[1]
        L = P - n  # candidates: the tokens before the first query (all of them visible to every query)
        k_sel = max(1, int(budget * L))
        qg = q.view(H, -1, n, d)
        pos = torch.arange(L, device=k_pre.device).expand(H, L)
        p_exact, _ = _attention(qg, k_post, k_post, ctx.scaling)
        p_exact = p_exact[..., :L]  # (H, G, n, L)
        oracle = topk_indices(p_exact.max(dim=1).values, k_sel)  # (H, n, k)
        mu_rope = ctx.rope(fit_offset(k_pre[:, :L], "mean").to(k_pre.dtype).unsqueeze(1).expand(H, L, d).contiguous(), pos).float()
        for fname, fmt in formats.items():
            for centred in (False, True):
                if centred and fmt == NATIVE:
                    continue
                lm = k_post[:, :L].float() - (mu_rope if centred else 0)
                if fmt != NATIVE:
                    from .quant import make_quantizer

                    qz = make_quantizer(fmt, group=d)
                    lm = qz.dequantize(qz.quantize(lm.reshape(H * L, d))).view(H, L, d).to(k_post.dtype).float()
                if centred:
                    lm = lm + mu_rope
                s = torch.matmul(qg.float(), lm.transpose(-1, -2).unsqueeze(1)) * ctx.scaling
                score = torch.softmax(s, dim=-1).max(dim=1).values  # (H, n, L)
                sel = topk_indices(score, k_sel)
                mass = torch.gather(p_exact, -1, sel.unsqueeze(1).expand(-1, p_exact.shape[1], -1, -1)).sum(-1)
                hit = torch.zeros(H, n, L, dtype=torch.bool, device=sel.device).scatter_(-1, oracle, True)
                recall = torch.gather(hit, -1, sel).float().sum(-1) / k_sel
                oracle_mass = torch.gather(p_exact, -1, oracle.unsqueeze(1).expand(-1, p_exact.shape[1], -1, -1)).sum(-1)
                rows.append({"layer": layer, "format": fname, "spec": fmt, "centred": centred,
                             "captured_mass": mass.mean().item(), "oracle_mass": oracle_mass.mean().item(),
                             "oracle_recall": recall.mean().item()})
    return rows
