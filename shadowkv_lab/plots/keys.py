"""The keys' constant offset per layer and what it does to quantized keys (rows of shadowkv_lab.key_diagnostics)."""

from __future__ import annotations

import pandas as pd

from .style import figure

RULE_STYLE = {  # key-offset rule -> (label, colour, marker)
    "none": ("none (the paper)", "#d62728", "o"),
    "bias": ("k_proj bias", "#9467bd", "v"),
    "mean": ("mean", "#ff7f0e", "s"),
    "selective": ("selective mean", "#2ca02c", "D"),
}


def key_offsets(stats: pd.DataFrame, errors: pd.DataFrame, fmt: str | None = None):
    """Two panels over layers. Left: mean |k| of the pre-RoPE keys, their spread |k - mean| and the k_proj bias norm
    (log scale, mean over KV heads). Right: the attention's TV distance at the prompt's last positions when keys are
    stored in `fmt` (default: the first format in `errors`), one line per key-offset rule.

    stats: key_diagnostics.key_statistics rows; errors: key_diagnostics.key_attention_error rows."""
    fig, (a, b) = figure("page", 2.3, 1, 2)
    s = stats.groupby("layer")[["key_norm", "centred_norm", "bias_norm"]].mean()
    a.plot(s.index, s.key_norm, "-o", color="#1f77b4", ms=3, label="|k|")
    a.plot(s.index, s.centred_norm, "-s", color="#7f7f7f", ms=3, label="|k − mean| (spread)")
    if s.bias_norm.notna().any():
        a.plot(s.index, s.bias_norm, ":", color="#9467bd", label="|k_proj bias|")
    a.set_yscale("log")
    a.set_xlabel("layer")
    a.set_ylabel("norm (pre-RoPE keys)")
    a.set_title("Key offset per layer")
    a.legend(loc="upper right")
    fmt = fmt or errors["format"].iloc[0]
    e = errors[errors["format"] == fmt]
    rules = sorted(e["key_offset"].unique(), key=lambda r: list(RULE_STYLE).index(r) if r in RULE_STYLE else len(RULE_STYLE))
    for rule in rules:
        label, color, marker = RULE_STYLE.get(rule, (rule, None, "."))
        g = e[e["key_offset"] == rule].sort_values("layer")
        b.plot(g.layer, g.tv, "-", marker=marker, color=color, ms=3, label=label)
    b.set_ylim(0, 1)
    b.set_xlabel("layer")
    b.set_ylabel("attention TV vs exact keys")
    b.set_title(f"{fmt} keys: error by key-offset rule")
    b.legend(loc="upper right", title="offset removed")
    return fig
