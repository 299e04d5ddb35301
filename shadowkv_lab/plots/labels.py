"""Readable names and fixed colours for methods, storage formats, tasks and memory categories.

A method is named from its config (the `config` JSON every results row carries), never by parsing its name: the
nearest preset by the number of differing fields gives the base label, and every differing field is spelled out
("YAKV, budget 6.25%", "ShadowKV, rank 20", "Exact K/V, landmarks HIGGS 2-bit"). Storage formats have one naming
scheme everywhere: the family and its nominal bits per dimension ("HIGGS 2-bit"), with the exact bits per
dimension including scales where a figure needs them ("2.5 b/dim").
"""

from __future__ import annotations

import textwrap

import functools

import hashlib
import json
import math
from functools import lru_cache

import pandas as pd

from ..cache.presets import PRESETS

# Okabe & Ito (2008) palette: distinguishable with every common colour-vision deficiency.
OKABE_ITO = {"black": "#000000", "orange": "#E69F00", "sky": "#56B4E9", "green": "#009E73", "yellow": "#F0E442",
             "blue": "#0072B2", "vermillion": "#D55E00", "purple": "#CC79A7", "grey": "#999999"}
# Short labels and fixed colours of the named presets; every other config gets its nearest preset's label plus
# the fields that differ, and a colour hashed from that label (the same in every figure).
PRESET_LABELS = {
    "full": "Full attention",
    "shadowkv": "ShadowKV",
    "shadowkv_scaled": "ShadowKV (scaled rank)",
    "shadowkv_fullkeys": "ShadowKV, exact keys",
    "shadowkv_oracle": "ShadowKV keys, oracle selection",
    "oracle": "Exact keys, oracle selection",
    "shadowkv_serving": "ShadowKV, mean-dot scoring",
    "yakv": "YAKV",
    "yakv_residual": "YAKV, residual landmarks",
    "yakv_centred": "YAKV, centred keys + landmarks",
    "yakv_centred_keys": "YAKV, centred keys",
    "yakv_residual_centred": "YAKV, residual landmarks, centred",
    "yakv_exactkv": "YAKV landmarks, exact K/V",
    "yakv_lut": "YAKV, landmarks scored from codes",
    "yakv_centred_keys_lut": "YAKV, centred keys, landmarks from codes",
}
METHOD_COLORS = {
    "full": OKABE_ITO["black"],
    "shadowkv": OKABE_ITO["vermillion"],
    "shadowkv_scaled": OKABE_ITO["vermillion"],
    "shadowkv_fullkeys": OKABE_ITO["orange"],
    "shadowkv_oracle": OKABE_ITO["purple"],
    "oracle": OKABE_ITO["grey"],
    "shadowkv_serving": OKABE_ITO["yellow"],
    "yakv": OKABE_ITO["blue"],
    "yakv_residual": OKABE_ITO["sky"],
    "yakv_centred": "#332288",
    "yakv_centred_keys": "#AA4499",
    "yakv_residual_centred": "#88CCEE",
    "yakv_exactkv": OKABE_ITO["green"],
    "yakv_lut": "#44AA99",
    "yakv_centred_keys_lut": "#117733",
}
# The study's methods (not ablations or diagnostics): the accuracy-vs-memory frontier is drawn over these and
# their budget variants; everything else is greyed there.
MAIN_METHODS = ("full", "shadowkv", "shadowkv_scaled", "shadowkv_serving", "yakv", "yakv_residual", "yakv_centred",
                "yakv_residual_centred")
# Paul Tol's "muted" list for configs that are not named presets.
EXTRA_COLORS = ["#332288", "#88CCEE", "#44AA99", "#117733", "#999933", "#DDCC77", "#CC6677", "#882255", "#AA4499"]
# One colour per memory category in every figure.
CATEGORY_COLORS = {
    "prompt_kv": OKABE_ITO["black"], "landmarks": OKABE_ITO["blue"], "lowrank_U": OKABE_ITO["vermillion"],
    "lowrank_SV": OKABE_ITO["orange"], "keys": OKABE_ITO["purple"], "values": OKABE_ITO["green"], "local": OKABE_ITO["sky"],
    "outliers": OKABE_ITO["yellow"], "candidate_ids": OKABE_ITO["grey"], "generated": "#DDDDDD", "step_buffer": "#BBBBBB",
}
CATEGORY_LABELS = {"prompt_kv": "prompt K/V", "lowrank_U": "low-rank U", "lowrank_SV": "low-rank SV", "candidate_ids": "candidate ids",
                   "step_buffer": "step buffer"}
TASK_LABELS = {"text2json": "Text2JSON", "multineedle": "MultiNeedle", "longproc": "LongProc HTML→TSV",
               "longproc_html_to_tsv": "LongProc HTML→TSV", "html_to_tsv": "LongProc HTML→TSV", "ruler_niah_single": "RULER NIAH single",
               "ruler_niah_multikey": "RULER NIAH multi-key", "ruler_vt": "RULER variable tracking"}
TASK_COLORS = [OKABE_ITO[k] for k in ("blue", "vermillion", "green", "purple", "orange", "sky", "yellow", "grey")]
MARKERS = "osD^vP*Xh<>"


# ---------------------------------------------------------------------------------------------- formats
@lru_cache(maxsize=None)
def format_bits(fmt: str, width: int = 128) -> float:
    """Exact bits per dimension of a storage format including its scales, for rows of `width` elements."""
    from ..quant import make_quantizer

    if fmt in (None, "native"):
        return 16.0
    return float(make_quantizer(fmt, group=width).bits_per_element(width))


def format_name(fmt) -> str:
    """One name per storage format in every figure and table: family and nominal bits per dimension (codes only).
    'higgs-4-256' -> 'HIGGS 2-bit', 'residual:m=2,main=higgs-4-256,res=higgs-16-256' -> 'residual 2+0.5-bit',
    'nvfp4' -> 'NVFP4 4-bit', 'fp8' -> 'FP8 8-bit', 'native' / 'bf16' -> 'bf16 16-bit'."""
    from ..quant import parse_format

    if fmt is None or (isinstance(fmt, float) and math.isnan(fmt)) or fmt == "native":
        return "bf16 16-bit"
    spec = parse_format(str(fmt))

    def nominal(s) -> str:
        if s.kind == "higgs":
            return f"{math.log2(s.n) / s.p:g}"
        return {"nvfp4": "4", "fp8": "8"}.get(s.kind, "16")

    if spec.kind == "residual":
        return f"residual {nominal(spec.main)}+{nominal(spec.res)}-bit"
    family = {"higgs": "HIGGS", "nvfp4": "NVFP4", "fp8": "FP8"}.get(spec.kind, spec.dtype or spec.kind)
    return f"{family} {nominal(spec)}-bit"


def format_label(fmt, bits: float | None = None) -> str:
    """format_name with the exact bits per dimension including scales: 'HIGGS 2-bit (2.5 b/dim)'."""
    name = format_name(fmt)
    return f"{name} ({bits:.3g} b/dim)" if bits is not None and math.isfinite(bits) else name


# ---------------------------------------------------------------------------------------------- methods
def config_dict(c) -> dict | None:
    """A results row's config (its JSON string, or a dict) as a dict; None when it is neither."""
    if isinstance(c, dict):
        return c
    if isinstance(c, str):
        try:
            return json.loads(c)
        except ValueError:
            return None
    return None


@lru_cache(maxsize=1)
def _preset_dicts() -> dict[str, dict]:
    return {k: v.to_dict() for k, v in PRESETS.items()}


def _differences(cfg: dict, base: dict) -> list[str]:
    """Fields whose values differ; a field missing from one side has its default (config dicts omit fields such as
    key_offset while they hold the default)."""
    defaults = _field_defaults()
    keys = list(cfg) + [k for k in base if k not in cfg]
    return [k for k in keys if k not in ("name", "description", "offload")
            and cfg.get(k, defaults.get(k)) != base.get(k, defaults.get(k))]


@functools.lru_cache(maxsize=1)
def _field_defaults() -> dict:
    import dataclasses

    from ..cache.config import OffloadConfig

    return {f.name: f.default for f in dataclasses.fields(OffloadConfig)}


def nearest_preset(config) -> tuple[str, list[str]]:
    """(preset name, differing fields) of the preset of the same kind with the fewest fields different from
    `config` (a ShadowKV budget variant is ShadowKV's, not full attention's, though each differs in one field); ties
    go to the presets' order, so 'full' / 'shadowkv' / 'yakv' win over ablation presets."""
    cfg = config_dict(config) or {}
    best = min(_preset_dicts().items(),
               key=lambda kv: (cfg.get("kind") != kv[1].get("kind"), len(_differences(cfg, kv[1]))))
    return best[0], _differences(cfg, best[1])


def _describe(field: str, value, cfg: dict) -> str:
    if field == "rank":
        if value is None or value < 0:
            return "exact keys"
        return f"rank {100 * value:.3g}% of H·d" if 0 < value < 1 else f"rank {int(value)}"
    if field == "chunk_size":
        return f"chunk {value}"
    if field == "sparse_budget":
        return f"budget {100 * value:.3g}%" if 0 < float(value) < 1 else f"budget {int(value)} tokens"
    if field in ("landmark_format", "key_format", "value_format"):
        what = {"landmark_format": "landmarks", "key_format": "keys", "value_format": "values"}[field]
        return f"exact {what}" if value == "native" and what != "landmarks" else f"{what} {format_name(value)}"
    if field == "selection":
        return f"{value} selection"
    if field == "scoring":
        return f"{str(value).replace('_', '-')} scoring"
    if field == "local_budget":
        return f"local {value}"
    if field == "outlier_chunks":
        return f"{value} outlier chunks"
    if field == "landmark_scoring":
        return "landmarks scored from codes" if value == "codes" else "dequantized landmarks scored"
    if field in ("key_offset", "landmark_offset"):
        what = "keys" if field == "key_offset" else "landmarks"
        return f"{what} not centred" if value == "none" else f"{what} centred ({value})"
    return f"{field.replace('_', ' ')} {value}"


def config_label(config, name: str | None = None) -> str:
    """Readable label of one config: a named preset's short label when it is that preset, else its nearest
    preset's label and the fields that differ."""
    cfg = config_dict(config)
    if cfg is None:
        return PRESET_LABELS.get(name, name or "?")
    base, diff = nearest_preset(cfg)
    if base in PRESET_LABELS:
        label = PRESET_LABELS[base]
    else:  # a preset described by its fields: describe this config's own, so a changed chunk is not named twice
        label = _fields_label(cfg)
        diff = [f for f in diff if f not in _FIELDS_LABELLED]
    if not diff:
        return label
    if "key_format" in diff and label.endswith(", exact keys"):  # 'ShadowKV, keys HIGGS 4-bit', not '..., exact keys, keys ...'
        label = label[: -len(", exact keys")]
    return label + ", " + ", ".join(dict.fromkeys(_describe(f, cfg.get(f), cfg) for f in diff))


_FIELDS_LABELLED = ("landmark_format", "chunk_size", "rank")  # what _fields_label names


def _fields_label(cfg: dict) -> str:
    """A config described from its landmark format, chunk size, rank and whether keys and values are exact."""
    parts = [f"landmarks {format_name(cfg['landmark_format'])}", f"chunk {cfg['chunk_size']}"]
    if cfg.get("rank", -1) > 0:
        parts.append(_describe("rank", cfg["rank"], cfg))
    if cfg.get("key_format") == cfg.get("value_format") == "native" and cfg.get("rank", -1) < 0:
        parts.append("exact K/V")
    return ", ".join(parts)


def method_labels(df: pd.DataFrame) -> dict[str, str]:
    """method -> readable label, from each method's config (first row); methods without a config keep their
    preset label or their name."""
    if df is None or "method" not in df or len(df) == 0:
        return {}
    if "config" not in df:
        return {m: PRESET_LABELS.get(m, m) for m in dict.fromkeys(df["method"])}
    first = df.drop_duplicates("method")
    return {m: config_label(c, m) for m, c in zip(first["method"], first["config"])}


def method_label(method: str, config=None) -> str:
    """Readable label of one method: from its config when given (or when it is a named preset), else the name."""
    if config is None and method in PRESETS:
        config = PRESETS[method].to_dict()
    return config_label(config, method) if config is not None else PRESET_LABELS.get(method, str(method))


def _hash_color(key: str) -> str:
    return EXTRA_COLORS[int(hashlib.md5(key.encode()).hexdigest(), 16) % len(EXTRA_COLORS)]


def method_color(method: str, config=None) -> str:
    """Fixed colour of a named preset, also for its budget variants (same config but the budget); any other
    config: a stable hash of its label, so a method has one colour in every figure and notebook."""
    if config is None and method in PRESETS:
        config = PRESETS[method].to_dict()
    cfg = config_dict(config)
    if cfg is None:
        return METHOD_COLORS.get(method, _hash_color(str(method)))
    base, diff = nearest_preset(cfg)
    if base in METHOD_COLORS and set(diff) <= {"sparse_budget"}:
        return METHOD_COLORS[base]
    return _hash_color(config_label(cfg))


def method_colors(df: pd.DataFrame) -> dict[str, str]:
    """method -> colour, from each method's config (see method_color)."""
    if df is None or "method" not in df or len(df) == 0:
        return {}
    first = df.drop_duplicates("method")
    cfgs = first["config"] if "config" in first else [None] * len(first)
    return {m: method_color(m, c) for m, c in zip(first["method"], cfgs)}


def is_main(method: str, config=None) -> bool:
    """True for the study's methods (MAIN_METHODS) and their budget variants; False for ablations and diagnostics."""
    if config is None and method in PRESETS:
        config = PRESETS[method].to_dict()
    cfg = config_dict(config)
    if cfg is None:
        return method in MAIN_METHODS
    base, diff = nearest_preset(cfg)
    return base in MAIN_METHODS and set(diff) <= {"sparse_budget"}


def task_label(task: str, wrap: int | None = None) -> str:
    """'text2json' -> 'Text2JSON'; a task named with its length ('text2json@16k', analysis.tasks_by_length) ->
    'Text2JSON 16k'. wrap: break the name into lines of at most that many characters and put the length on a line
    of its own (tick labels side by side: 'MultiNeedle 16k' ran into 'MultiNeedle 29k' beside it)."""
    t, _, length = str(task).partition("@")
    name = TASK_LABELS.get(t, t.replace("_", " "))
    if wrap:
        return "\n".join(textwrap.wrap(name, wrap) + ([length] if length else []))
    return f"{name} {length}" if length else name


def task_colors(tasks) -> dict:
    return {t: TASK_COLORS[i % len(TASK_COLORS)] for i, t in enumerate(dict.fromkeys(tasks))}


def category_color(category: str) -> str:
    return CATEGORY_COLORS.get(category, _hash_color(category))


def category_label(category: str) -> str:
    return CATEGORY_LABELS.get(category, category)


def styler(rows: pd.DataFrame | None = None):
    """(label, colour) functions of a method name: from `rows`' configs when given (results rows), else from the
    named presets (frames such as attention records carry no config)."""
    names, colors = method_labels(rows), method_colors(rows)
    return (lambda m: names.get(m) or method_label(m)), (lambda m: colors.get(m) or method_color(m))
