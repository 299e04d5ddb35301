"""The common interface of every task: a `Sample` and a `Task` (load + score).

Other parts of the project (runner, notebooks, CLI) depend on exactly this interface:

    task = get_task("text2json")
    samples = task.load(n=8, tokens=16384, seed=0, tokenizer=tok)   # path=None: generated offline
    scores = task.score(prediction_text, sample.gold)              # dict of floats in [0, 100]
    scores[task.primary_metric]

`prompt` is ONE user message; the caller applies the chat template. `score` never raises; it returns
NaN only for a sample whose gold is invalid (Text2JSON gold with duplicate names), and `aggregate`
excludes NaN from means, as the reference evaluation does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from .jsonl import read_jsonl

DEFAULT_N = 100  # samples a generator makes when n is None


@dataclass
class Sample:
    """One evaluation item: a single user message and whatever the scorer needs as gold."""

    id: str
    prompt: str
    gold: Any
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.id, str) or not self.id:
            raise ValueError(f"Sample.id must be a non-empty string, got {self.id!r}")
        if not isinstance(self.prompt, str):
            raise TypeError(f"Sample.prompt must be a string, got {type(self.prompt).__name__}")
        if not isinstance(self.meta, dict):
            raise TypeError(f"Sample.meta must be a dict, got {type(self.meta).__name__}")

    def to_record(self) -> dict:
        return {"id": self.id, "prompt": self.prompt, "gold": self.gold, "meta": self.meta}


class Task:
    """Base class: a named task with a loader, a scorer and a generation cap.

    Subclasses set the three class attributes and implement `load` and `score`. Records on disk
    default to {id, prompt, gold, meta}; a task with an official file format (Text2JSON) overrides
    `to_record` / `from_record`.
    """

    name: str = ""
    max_new_tokens: int = 128
    primary_metric: str = "score"

    def load(self, path=None, *, n=None, tokens=None, seed=0, tokenizer=None, **kw) -> list[Sample]:
        raise NotImplementedError

    def score(self, prediction: str, gold) -> dict[str, float]:
        raise NotImplementedError

    def max_new_tokens_for(self, sample: Sample) -> int:
        """Per-sample cap: meta["max_new_tokens"] when a loader set one, else the task default."""
        v = sample.meta.get("max_new_tokens") if isinstance(sample.meta, dict) else None
        return int(v) if isinstance(v, int) and v > 0 else self.max_new_tokens

    # -- records on disk ------------------------------------------------------------------------
    def to_record(self, sample: Sample) -> dict:
        return sample.to_record()

    def from_record(self, row: dict, index: int = 0) -> Sample:
        return Sample(
            id=str(row.get("id") or f"{self.name}-{index}"),
            prompt=row["prompt"],
            gold=row.get("gold"),
            meta=dict(row.get("meta") or {}),
        )

    def read_records(self, path, n: int | None = None) -> list[Sample]:
        """Read samples this task wrote with `to_record` (JSONL, optionally .gz)."""
        out = []
        for i, row in enumerate(read_jsonl(path)):
            if n is not None and len(out) >= n:
                break
            out.append(self.from_record(row, i))
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, max_new_tokens={self.max_new_tokens}, primary_metric={self.primary_metric!r})"


def looks_like_records(path) -> bool:
    """Whether path is a JSONL file of records that a task wrote (`python -m shadowkv_lab data`), as opposed to a
    source the task generates or renders samples from (a haystack, the LongProc folder)."""
    p = Path(path)
    if not p.is_file() or not p.name.endswith((".jsonl", ".jsonl.gz")):
        return False
    try:
        row = next(iter(read_jsonl(p)))
    except (StopIteration, ValueError, UnicodeDecodeError):
        return False
    return "prompt" in row and "gold" in row


def aggregate(rows: Iterable[dict[str, float]]) -> dict[str, float]:
    """Mean of every numeric metric over rows, NaN excluded (invalid gold samples don't count).

    Also returns n (rows seen) and n_invalid (rows whose value was NaN for at least one metric).
    """
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    n = n_invalid = 0
    for row in rows:
        n += 1
        bad = False
        for k, v in row.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                continue
            if math.isnan(v):
                bad = True
                continue
            sums[k] = sums.get(k, 0.0) + float(v)
            counts[k] = counts.get(k, 0) + 1
        n_invalid += bad
    out = {k: sums[k] / counts[k] for k in sums}
    out["n"] = n
    out["n_invalid"] = n_invalid
    return out
