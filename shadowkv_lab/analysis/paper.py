"""The paper's reported numbers, so that a notebook can set them beside ours and say why they differ.

The paper's memory table is for Llama-3.1-8B (8 KV heads x head dim 128, bf16) at a 128k-token prompt, counting
bytes per prompt token per layer; its landmark widths are nominal bits per dimension (before scales).
"""

from __future__ import annotations

import pandas as pd

# Llama-3.1-8B, the paper's model for its memory table.
PAPER_SHAPE = {"n_kv_heads": 8, "head_dim": 128, "prompt_len": 131072}
PAPER = {
    # GPU bytes per prompt token per layer (paper's memory table).
    "device_B_per_token_layer": {"full": 4096.0, "shadowkv": 576.0, "yakv": 258.0},
    # Nominal landmark bits per dimension (codes only).
    "landmark_bits": {"yakv": 2.0, "yakv_residual": 1.5},
    # Landmark memory saved by residual landmarks against plain 2-bit landmarks, nominal.
    "residual_saving_pct": 25.0,
    # ShadowKV's published sparse budget (tokens at a 128k prompt) and the budget multiple that does not rescue it.
    "shadowkv_budget_tokens": 2048,
    "budget_multiple_tried": 10,
}


def paper_memory(methods=("full", "shadowkv", "yakv", "yakv_residual"), shape: dict | None = None) -> pd.DataFrame:
    """Closed-form GPU and offloaded bytes per token per layer of the presets at the paper's shape, beside the
    paper's reported GPU bytes (NaN where the paper gives none) and the gap in percent."""
    from ..cache.memory import analytic_bytes_per_token
    from ..cache.presets import PRESETS

    shape = {**PAPER_SHAPE, **(shape or {})}
    full = 2 * shape["n_kv_heads"] * shape["head_dim"] * 2
    rows = []
    for m in methods:
        b = analytic_bytes_per_token(PRESETS[m], **shape)
        paper = PAPER["device_B_per_token_layer"].get(m, float("nan"))
        rows.append({"method": m, "ours GPU B/token/layer": round(b["device"], 1), "paper GPU B/token/layer": paper,
                     "gap %": round(100 * (b["device"] / paper - 1), 1) if paper == paper else float("nan"),
                     "ours offloaded B/token/layer": round(b["offloaded"], 1), "GPU vs full bf16 K+V %": round(100 * b["device"] / full, 1)})
    return pd.DataFrame(rows)


def paper_landmark_bits(head_dims=(64, 128)) -> pd.DataFrame:
    """Landmark bits per dimension of plain 2-bit HIGGS and of residual landmarks: the paper's nominal widths beside
    ours with the fp32 scale of each head row included, per head dim, and the residual saving each gives. The
    scales are a bigger share of a short row, so the saving shrinks at small head dims."""
    from ..cache.presets import LANDMARK_PRECISIONS, RESIDUAL_LANDMARKS
    from ..quant import make_quantizer

    rows = [{"head dim": "paper (nominal)", "2-bit HIGGS": PAPER["landmark_bits"]["yakv"], "residual": PAPER["landmark_bits"]["yakv_residual"],
             "residual saving %": PAPER["residual_saving_pct"]}]
    for d in head_dims:
        plain = make_quantizer(LANDMARK_PRECISIONS["higgs2"], group=d).bits_per_element(d)
        res = make_quantizer(RESIDUAL_LANDMARKS, group=d).bits_per_element(d)
        rows.append({"head dim": str(d), "2-bit HIGGS": plain, "residual": res, "residual saving %": round(100 * (1 - res / plain), 1)})
    return pd.DataFrame(rows)
