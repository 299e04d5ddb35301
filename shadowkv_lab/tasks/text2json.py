"""Text2JSON task: loader for the official file (or a hub copy), offline generator, scorer.

Official form: `text_to_json.jsonl.gz`, one JSON object per line with `problem` (the whole user
message: long text + extraction instruction) and `answer` (a JSON *string* holding the gold list of
objects). Our generated files use the same two fields plus `id` and `meta`, so one loader reads both:

    samples = load_text2json("text_to_json.jsonl.gz")      # official (gz or plain)
    samples = load_text2json("data/t2j_16k.jsonl")         # ours
    samples = load_text2json("org/text2json")              # a hub copy (needs network)
    write_text2json("data/t2j_16k.jsonl", generate(100, tokens=16384, tokenizer=tok))
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Iterable

from .base import DEFAULT_N, Sample, Task
from .jsonl import read_jsonl, write_jsonl
from .text2json_gen import Text2JSONConfig, generate, generate_sample  # noqa: F401 (re-exported)
from .text2json_score import LOOPS, ending
from .text2json_score import canonical, parse_gold, score, score_lenient, score_salvaged  # noqa: F401 (re-exported)
from .tokens import annotate_lengths

OFFICIAL_FILE = "text_to_json.jsonl.gz"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def _parse_answer(answer):
    """Gold list from the `answer` field (a JSON string officially); unparseable stays a string (-> NaN)."""
    if isinstance(answer, str):
        try:
            return json.loads(answer)
        except ValueError:
            return answer
    return answer


def row_to_sample(row: dict, index: int, source: str) -> Sample:
    problem = row.get("problem", row.get("prompt"))
    if not isinstance(problem, str):
        raise ValueError(f"{source} row {index}: no string 'problem' field (keys: {sorted(row)})")
    if "answer" not in row and "gold" not in row:
        raise ValueError(f"{source} row {index}: no 'answer' field")
    meta = dict(row.get("meta") or {})
    meta.setdefault("source", source)
    meta.setdefault("index", index)
    return Sample(id=str(row.get("id") or f"text2json-{index:04d}"), prompt=problem,
                  gold=_parse_answer(row["answer"] if "answer" in row else row["gold"]), meta=meta)


def sample_to_row(sample: Sample) -> dict:
    gold = sample.gold if isinstance(sample.gold, str) else json.dumps(sample.gold, ensure_ascii=False)
    return {"id": sample.id, "problem": sample.prompt, "answer": gold, "meta": sample.meta}


def _load_hub(hub_id: str, split: str, revision: str | None) -> list[dict]:
    import datasets

    try:
        ds = datasets.load_dataset(hub_id, split=split, revision=revision)
    except Exception as e:  # noqa: BLE001 - offline machines fail in many ways (connection, cache miss)
        raise RuntimeError(
            f"could not load {hub_id!r} (split {split!r}) from the Hugging Face hub: {type(e).__name__}: {e}. "
            f"Offline? Download {OFFICIAL_FILE} (or our JSONL) and pass its local path instead."
        ) from e
    return [dict(r) for r in ds]


def load_text2json(path, *, n: int | None = None, split: str = "train", revision: str | None = None) -> list[Sample]:
    """Read Text2JSON samples from a local JSONL(.gz) file, a folder holding the official file, or a hub id."""
    p = Path(path)
    if p.is_dir():
        cands = [p / OFFICIAL_FILE, p / OFFICIAL_FILE[:-3]] + sorted(p.glob("*.jsonl*"))
        found = [c for c in cands if c.is_file()]
        if not found:
            raise FileNotFoundError(f"no {OFFICIAL_FILE} or *.jsonl in folder {p}")
        p = found[0]
    if p.is_file():
        rows: Iterable[dict] = read_jsonl(p)
        source = str(p)
    elif _HUB_ID.match(str(path)) and not os.path.exists(str(path)):
        rows = _load_hub(str(path), split, revision)
        source = f"hub:{path}"
    else:
        raise FileNotFoundError(f"{path}: not a file, a folder, or a hub id (owner/name)")
    out = []
    for i, row in enumerate(rows):
        if n is not None and len(out) >= n:
            break
        out.append(row_to_sample(row, i, source))
    return out


def write_text2json(path, samples: Iterable[Sample]) -> int:
    """Write samples in the official field layout (+ id, meta); .gz paths are compressed."""
    return write_jsonl(path, (sample_to_row(s) for s in samples))


class Text2JSONTask(Task):
    """Extract every entity of one kind with two attributes as JSON (the paper's benchmark)."""

    name = "text2json"
    max_new_tokens = 1024  # the paper's cap; the longest official gold answer is 905 tokens
    primary_metric = "score"

    def load(self, path=None, *, n=None, tokens=None, seed=0, tokenizer=None, config: Text2JSONConfig | None = None,
             **kw) -> list[Sample]:
        """path=None: generate offline (kw = Text2JSONConfig fields); else load_text2json(path, split=...)."""
        if path is None:
            return generate(DEFAULT_N if n is None else n, tokens=tokens, seed=seed, tokenizer=tokenizer, config=config, **kw)
        unknown = set(kw) - {"split", "revision"}
        if unknown:
            raise TypeError(f"options {sorted(unknown)} only apply to generated data (path=None); loading takes split, revision")
        samples = load_text2json(path, n=n, split=kw.get("split", "train"), revision=kw.get("revision"))
        if tokenizer is not None:
            annotate_lengths(samples, tokenizer)
        return samples

    def score(self, prediction: str, gold) -> dict[str, float]:
        return {"score": score(prediction, gold), "score_lenient": score_lenient(prediction, gold),
                "score_salvaged": score_salvaged(prediction, gold),
                # 100 when the output is a loop (its list unclosed: one object repeated, the list restarted, or a
                # series run on), else 0: its mean over rows is the loop rate, which the reference rule scores 0
                "looped": 100.0 * (ending(prediction) in LOOPS)}

    def to_record(self, sample: Sample) -> dict:
        return sample_to_row(sample)

    def from_record(self, row: dict, index: int = 0) -> Sample:
        return row_to_sample(row, index, "record")
