"""Memory report: bytes per category, device-resident vs offloaded, measured from the cache's actual tensors."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field


@dataclass
class MemoryReport:
    """Rows of (layer, category, role, storage_bytes, packed_bytes); role in {device, offloaded, analysis}.

    storage_bytes is what the tensors occupy; packed_bytes counts quantized codes bit-packed (what a serving
    kernel would store). "analysis" tensors exist only for the oracle/recording and are excluded from totals.
    """

    prompt_len: int
    n_layers: int
    rows: list[tuple[int, str, str, int, int]] = field(default_factory=list)

    def total(self, role: str, packed: bool = True) -> int:
        i = 4 if packed else 3
        return sum(r[i] for r in self.rows if r[2] == role)

    @property
    def device_bytes(self) -> int:
        return self.total("device")

    @property
    def offloaded_bytes(self) -> int:
        return self.total("offloaded")

    def per_token_per_layer(self, role: str = "device", packed: bool = True, exclude=("generated", "step_buffer")) -> float:
        """Prompt-proportional bytes per prompt token per layer (generated tokens and step buffers excluded)."""
        i = 4 if packed else 3
        tot = sum(r[i] for r in self.rows if r[2] == role and r[1] not in exclude)
        return tot / max(self.prompt_len * self.n_layers, 1)

    def by_category(self) -> dict[tuple[str, str], dict[str, int]]:
        out: dict[tuple[str, str], dict[str, int]] = {}
        for _, cat, role, st, pk in self.rows:
            d = out.setdefault((cat, role), {"storage_bytes": 0, "packed_bytes": 0})
            d["storage_bytes"] += st
            d["packed_bytes"] += pk
        return out

    def to_dict(self) -> dict:
        """Flat dict for a results row."""
        d = {
            "prompt_len": self.prompt_len,
            "device_bytes": self.device_bytes,
            "offloaded_bytes": self.offloaded_bytes,
            "device_bytes_storage": self.total("device", packed=False),
            "analysis_bytes": self.total("analysis"),
            "device_bytes_per_token_layer": self.per_token_per_layer("device"),
            "offloaded_bytes_per_token_layer": self.per_token_per_layer("offloaded"),
        }
        for (cat, role), v in sorted(self.by_category().items()):
            d[f"{role}:{cat}"] = v["packed_bytes"]
        return d

    def frame(self):
        import pandas as pd

        return pd.DataFrame([{"category": c, "role": r, **v} for (c, r), v in sorted(self.by_category().items())])

    def __str__(self) -> str:
        lines = [f"{'category':<16}{'role':<11}{'packed MiB':>12}{'storage MiB':>13}"]
        for (cat, role), v in sorted(self.by_category().items(), key=lambda kv: (kv[0][1], kv[0][0])):
            lines.append(f"{cat:<16}{role:<11}{v['packed_bytes'] / 2**20:>12.3f}{v['storage_bytes'] / 2**20:>13.3f}")
        lines.append(
            f"device {self.device_bytes / 2**20:.3f} MiB ({self.per_token_per_layer('device'):.1f} B/token/layer), "
            f"offloaded {self.offloaded_bytes / 2**20:.3f} MiB ({self.per_token_per_layer('offloaded'):.1f} B/token/layer)"
        )
        return "\n".join(lines)


@functools.lru_cache(maxsize=None)
def _quant_bits(fmt: str, group: int, width: int) -> float:
    from shadowkv_lab.quant import make_quantizer

    return float(make_quantizer(fmt, group=group).bits_per_element(width))


def _offset_flag_bits(config, n_kv_heads: int, head_dim: int) -> float:
    """The selective key offset's flag: 1 bit per quantized key row (a token row of H*d channels, or a head's d)."""
    if getattr(config, "key_offset", "none") != "selective":
        return 0.0
    g = config.key_group or n_kv_heads * head_dim
    return 1.0 / (n_kv_heads * head_dim if g > head_dim else head_dim)


def format_bits(config, n_kv_heads: int, head_dim: int, dtype_bits: int) -> dict[str, float]:
    """Bits per stored element, scales included, of the landmarks, keys and values as the cache stores them
    (native = the model dtype): the one place that computes them (results rows, the closed-form table, demo data).

    Landmarks are quantized per head row (width d); keys/values per token row of H*d channels when their group
    spans more than one head, else per head row. No landmarks -> NaN (kind "full")."""
    from .config import NATIVE

    HD = n_kv_heads * head_dim

    def bits(fmt, group, default_group):
        if fmt == NATIVE:
            return float(dtype_bits)
        g = group or default_group
        return _quant_bits(fmt, g, HD if g > head_dim else head_dim)

    return {
        "landmark_bits": math.nan if config.kind == "full" else bits(config.landmark_format, config.landmark_group, head_dim),
        "key_bits": bits(config.key_format, config.key_group, HD) + _offset_flag_bits(config, n_kv_heads, head_dim),
        "value_bits": bits(config.value_format, config.value_group, HD),
    }


def analytic_bytes_per_token(config, n_kv_heads: int, head_dim: int, prompt_len: int, dtype_bytes: int = 2) -> dict[str, float]:
    """Closed-form GPU and offloaded bytes per prompt token per layer of a method (the paper's memory table,
    docs/paper.md).

    Counts the per-token terms (landmarks, U rows, resident local/outlier tokens amortised over the prompt, SV
    amortised) with quantized formats at their exact bits including scales (format_bits).
    """
    HD = n_kv_heads * head_dim
    if config.kind == "full":
        return {"device": 2 * HD * dtype_bytes, "offloaded": 0.0}
    b = format_bits(config, n_kv_heads, head_dim, 8 * dtype_bytes)
    c = config.chunk_size
    resident = config.local_budget + config.outlier_chunks * c
    device = b["landmark_bits"] * HD / 8 / c
    device += 2 * HD * dtype_bytes * min(resident, prompt_len) / prompt_len
    offloaded = b["value_bits"] * HD / 8
    rank = min(config.rank_for(n_kv_heads, head_dim), HD)
    if rank > 0:
        device += rank * dtype_bytes + n_kv_heads * rank * head_dim * dtype_bytes / prompt_len
    else:
        kb = b["key_bits"] * HD / 8
        if config.keys_on_device:
            device += kb
        else:
            offloaded += kb
    return {"device": device, "offloaded": offloaded}



@functools.lru_cache(maxsize=None)
def _storage_bits(fmt: str, group: int, width: int, dtype_bits: int) -> float:
    """Bits per element a store of `fmt` holds in memory (codes as stored, scales, constants), from a 64-row sample."""
    from .config import NATIVE

    if fmt == NATIVE:
        return float(dtype_bits)
    import torch

    from shadowkv_lab.quant import make_quantizer

    qt = make_quantizer(fmt, group=group).quantize(torch.randn(64, width))
    return 8.0 * qt.nbytes_storage / (64 * width)


def stacked_landmark_bytes(config, *, n_kv_heads: int, head_dim: int, n_units: int, dtype_bytes: int,
                           backend: str | None = None, n_q_heads: int | None = None) -> int:
    """Bytes per layer the stacked decode step (cache/batched.py, SparseGroup) holds for scoring one row's `n_units`
    candidate units per KV head, on top of what the row's cache stores (its memory report's landmarks: the method's
    storage, what the paper's tables count):
    - landmark_scoring "dequantized": a copy of every landmark, dequantized to the model dtype (H, M, d);
    - "codes" on the kernels (backend "triton"): the codes are stacked in place (the row keeps views of the stack),
      so only the step's transients: the queries' lookup tables (H, d/p, n, GP) fp32 and the logits (H, G, M) fp32;
    - "codes" on the torch backend: fp32 dequantized landmarks (H, M, d), the readable version of the same math;
    - oracle selection: the exact keys of every candidate token (H, M*c, d) in the model dtype (a unit is a token).
    backend None: the larger of the two backends' bytes. n_q_heads None: a GQA group of 8 (the tables' GP bound)."""
    H, d, M, e = n_kv_heads, head_dim, n_units, dtype_bytes
    if config.selection == "oracle" or config.landmark_scoring != "codes":
        return H * M * d * e
    from shadowkv_lab.quant import parse_format

    spec = parse_format(config.landmark_format)
    G = max(1, (n_q_heads or 8 * H) // H)
    GP = max(2, 1 << (G - 1).bit_length())  # kernels/scoring_lut.heads_padded
    triton = H * (d // spec.p) * spec.n * GP * 4 + H * G * M * 4
    torch_ = H * M * d * 4
    return {"triton": triton, "torch": torch_}.get(backend, max(triton, torch_))


def _kv_store_bytes(fmt: str, group: int | None, *, prompt_len: int, n_kv_heads: int, head_dim: int,
                    dtype_bits: int) -> float:
    """Bytes of one layer's key or value store of `fmt` over the prompt: rows of H*d, scales per `group` (default
    one per row; a group wider than a head spans the token row, else one head's row)."""
    HD = n_kv_heads * head_dim
    width = HD if (group or HD) > head_dim else head_dim
    return prompt_len * HD * _storage_bits(fmt, group or HD, width, dtype_bits) / 8


def row_footprint_bytes(config, *, n_layers: int, n_kv_heads: int, head_dim: int, prompt_len: int, new_tokens: int,
                        dtype_bytes: int, record: bool = False, backend: str | None = None,
                        n_q_heads: int | None = None) -> int:
    """Estimated compute-device bytes one row (one method on one prompt) holds during its decode, before building it:
    what its cache keeps on the device (the offloaded part too when config.offload is False), the exact copies of
    recording and the oracle, the generated tokens at the cap (buffers grow by doubling, and the stacked step holds a
    second copy), what the stacked step holds for scoring (stacked_landmark_bytes: dequantized landmarks, or only the
    lookup tables when the kernels score the codes; backend "torch" / "triton" as the decode will run, None: the
    larger), and the step's transients (selected rows and the prompt or selection in fp32; with record, the
    recorder's exact attention over the whole prompt), counted once: a layer's are freed before the next layer's are
    made (a captured graph's pool reuses them too). The runner sizes its waves with it (runner._plan_waves); tests
    check it bounds the built cache's memory report. The prefill state is counted per sample by the runner, not
    here."""
    H, d, L, e = n_kv_heads, head_dim, prompt_len, dtype_bytes
    HD = H * d
    gen = 2 * HD * e * (4 * max(new_tokens, 1) + 128)  # layer buffer + stacked copy, each up to 2x the cap
    if config.kind == "full":
        # prompt K/V and generated tokens per layer; the torch step's fp32 K/V of one layer at a time (freed after it)
        return int(n_layers * (2 * L * HD * e + gen) + 2 * L * HD * 4)
    c = config.chunk_size
    n_chunks = max(L // c - config.local_budget // c, 0)
    M = n_chunks  # candidates, outliers included (an upper bound)
    dtype_bits = 8 * e

    def bits(fmt, group, default_group, width):
        return _storage_bits(fmt, group or default_group, width, dtype_bits)

    lm_w = d
    per_layer = H * M * d * bits(config.landmark_format, config.landmark_group, d, lm_w) / 8  # stored landmarks
    units = M * c if config.selection == "oracle" else M
    per_layer += stacked_landmark_bytes(config, n_kv_heads=H, head_dim=d, n_units=units, dtype_bytes=e, backend=backend,
                                        n_q_heads=n_q_heads)
    per_layer += H * units * 8  # candidate ids (the oracle's: token positions) of the stack
    resident = min(config.local_budget + c + config.outlier_chunks * c, L)
    per_layer += 2 * HD * resident * e
    rank = min(config.rank_for(H, d), HD)
    store = dict(prompt_len=L, n_kv_heads=H, head_dim=d, dtype_bits=dtype_bits)
    if rank > 0:
        per_layer += L * rank * e + H * rank * d * e
    elif config.keys_on_device or not config.offload:
        per_layer += _kv_store_bytes(config.key_format, config.key_group, **store)
    if not config.offload:
        per_layer += _kv_store_bytes(config.value_format, config.value_group, **store)
    if record or config.selection == "oracle":
        per_layer += L * HD * e * (2 if record else 1)
    budget = L if config.selection == "oracle" else min(config.budget_tokens(L) if L else 0, L)
    per_layer += gen
    transient = 2 * HD * budget * (e + 4) + H * units * 4 * 4  # one layer's selected K/V (+ fp32) and scores
    if record:  # a group's recorded rows are recorded together (record_rows): each holds its K/V padded, joined, in
        transient += 2 * L * HD * (2 * e + 4) + 3 * (n_q_heads or 8 * H) * L * 4  # fp32, and its scores and probabilities
    return int(n_layers * per_layer + transient)


def row_host_bytes(config, *, n_layers: int, n_kv_heads: int, head_dim: int, prompt_len: int, dtype_bytes: int) -> int:
    """Estimated host bytes of one row's offloaded stores (pinned host memory): the values, and the stored keys of a
    method without low-rank keys that keeps them off the device. 0 for full attention and for a cache that offloads
    nothing. What a wave of exact-K/V rows holds on the host grows with the prompt (about 470 MB a row for the 1.5B at
    16k), so the runner sizes waves by host memory too."""
    if config.kind == "full" or not config.offload:
        return 0
    H, d = n_kv_heads, head_dim
    store = dict(prompt_len=prompt_len, n_kv_heads=H, head_dim=d, dtype_bits=8 * dtype_bytes)
    per_layer = _kv_store_bytes(config.value_format, config.value_group, **store)
    if min(config.rank_for(H, d), H * d) <= 0 and not config.keys_on_device:
        per_layer += _kv_store_bytes(config.key_format, config.key_group, **store)
    return int(n_layers * per_layer)
