"""Grouping helpers shared by the analyses: task groups, the presets' method order, config-derived columns."""

from __future__ import annotations

import json
import re

import pandas as pd

KEYS = ("model", "task", "method")

# Tasks where offloading is known to be near-lossless (docs/paper.md, claim 1: the "easy" contrast). Everything
# else (text2json, multineedle, longproc, ...) counts as context-intensive.
EASY_TASK_PREFIXES = ("ruler", "niah", "longbench", "vt", "fwe")

def task_group(task: str) -> str:
    """'easy' for RULER/NIAH-style retrieval of one to a few facts, else 'context-intensive'."""
    return "easy" if str(task).lower().startswith(EASY_TASK_PREFIXES) else "context-intensive"


def tasks_by_length(df: pd.DataFrame, column: str = "meta_target_tokens") -> pd.DataFrame:
    """The rows with `task` naming the prompt length too ('text2json' at 8,192 target tokens becomes 'text2json@8k',
    30,000 becomes 'multineedle@30k'): every analysis groups by task, and one task at two lengths is two cells.
    Rows without a target length, and tasks already named with one, keep their name."""
    if column not in df or df.empty:
        return df
    tokens = pd.to_numeric(df[column], errors="coerce")
    if (tokens <= 0).any():
        raise ValueError(f"{column} must be a positive token count; got {sorted(tokens[tokens <= 0].unique())}")
    task = df["task"].astype(str)
    suffix = tokens.map(lambda t: "" if pd.isna(t) else f"@{round(t / 1000):g}k").where(~task.str.contains("@"), "")
    out = df.copy()
    out["task"] = task + suffix
    return out


def _present(df: pd.DataFrame, cols) -> list[str]:
    return [c for c in cols if c in df.columns]

def method_order(methods) -> list[str]:
    """Methods in the presets' order (full first, then the ShadowKV family, the YAKV family, then the ablation
    presets); rank variants ('shadowkv_r20', 'shadowkv_oracle_scaled') and budget variants ('yakv@0.0625') sort
    with their preset, by budget;
    unknown names last, by name."""
    from ..cache.presets import PRESETS

    known = list(PRESETS)

    def key(m):
        base, _, budget = str(m).partition("@")
        mm = re.fullmatch(r"(.+)_(r\d+|scaled)", base)
        if base not in known and mm and mm[1] in known:
            base = mm[1]
        try:
            b = float(budget) if budget else 0.0
        except ValueError:
            b = float(re.sub(r"\D", "", budget) or 0)
        return (known.index(base) if base in known else len(known), base if base not in known else "", b, str(m))

    return sorted(dict.fromkeys(methods), key=key)

def config_field(df: pd.DataFrame, field: str) -> pd.Series:
    """A column of the method's OffloadConfig: the flat column when the runner wrote it, else from `config` JSON."""
    if field in df.columns:
        return df[field]

    def get(c):
        try:
            return (json.loads(c) if isinstance(c, str) else dict(c or {})).get(field)
        except (TypeError, ValueError):
            return None

    return df["config"].map(get) if "config" in df.columns else pd.Series([None] * len(df), index=df.index)
