"""Haystacks for retrieval tasks (MultiNeedle, RULER): from a file, or generated offline.

A haystack is an iterable of *units* (sentences, with their leading whitespace) whose plain
concatenation is the text; `tokens.fit_to_length` picks how many units to use, so a haystack is
always cut at a sentence boundary. Files:
  * a JSONL of {"title", "text"} rows (the Paul Graham essays layout of NeedleBench): rows are
    shuffled by the sample's RNG and joined by blank lines;
  * any other file: read as one UTF-8 text.
A file too short for the target is repeated (meta records `haystack_repeated`).
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Iterator

from .filler import Filler, noise_sentences
from .jsonl import open_text

# Split after sentence-final punctuation (optionally closing quotes/brackets) before whitespace;
# the whitespace stays at the start of the next unit so "".join(units) == text.
_SENT_END = re.compile(r"(?<=[.!?][\"'\u201d\u2019)\]])(?=\s)|(?<=[.!?])(?=\s)")


def split_sentences(text: str) -> list[str]:
    return [u for u in _SENT_END.split(text) if u]


def read_documents(path) -> list[str]:
    """Documents of a haystack file: JSONL rows' "text" (title ignored), or the whole file as one."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"haystack file not found: {p}")
    with open_text(p) as f:
        raw = f.read()
    if p.name.endswith((".jsonl", ".jsonl.gz", ".json")):
        docs = []
        for line in raw.splitlines():
            line = line.strip()
            if not line:
                continue
            try:
                row = json.loads(line)
            except ValueError:
                continue  # like NeedleBench: skip malformed lines
            if isinstance(row, dict) and isinstance(row.get("text"), str) and row["text"].strip():
                docs.append(row["text"])
        if not docs:
            raise ValueError(f"{p}: no rows with a non-empty 'text' field")
        return docs
    if not raw.strip():
        raise ValueError(f"{p}: empty haystack file")
    return [raw]


def file_units(docs: list[str], rng: random.Random) -> list[str]:
    """Shuffle documents with the sample's RNG and split their concatenation into sentence units."""
    docs = list(docs)
    rng.shuffle(docs)
    return split_sentences("\n\n".join(d.strip() for d in docs))


def generated_units(rng: random.Random, topic: str | None = None) -> Iterator[str]:
    """Endless varied filler prose, paragraph breaks every few sentences."""
    filler = Filler(rng, topic)
    i, next_break = 0, rng.randint(4, 9)
    while True:
        s = filler.sentence()
        i += 1
        if i == 1:
            yield s
        elif i >= next_break:
            next_break = i + rng.randint(4, 9)
            yield "\n\n" + s
        else:
            yield " " + s


def noise_units() -> Iterator[str]:
    """RULER's noise haystack, sentence by sentence."""
    first = True
    for s in noise_sentences():
        yield s if first else " " + s
        first = False


def resolve_haystack(source, rng: random.Random, topic: str | None = None) -> tuple[Iterator[str] | list[str], bool, str]:
    """(units, finite, description) for source = "noise" | "filler"/None | a file path (described by its file name:
    rows must not carry the machine's paths)."""
    if source is None or source == "filler":
        return generated_units(rng, topic), False, "generated"
    if source == "noise":
        return noise_units(), False, "noise"
    return file_units(read_documents(source), rng), True, Path(source).name
