"""JSON Lines read/write, plain or gzip (the official Text2JSON file is a .jsonl.gz)."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Iterable, Iterator


def _is_gzip(path: Path) -> bool:
    # Trust the magic bytes, not the suffix: people gunzip files and keep the name, or the reverse.
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


def open_text(path, mode: str = "r"):
    path = Path(path)
    if "w" in mode:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".gz":
            return gzip.open(path, "wt", encoding="utf-8")
        return open(path, "w", encoding="utf-8")
    if _is_gzip(path):
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, "r", encoding="utf-8")


def read_jsonl(path) -> Iterator[dict]:
    """Yield one dict per non-empty line; a malformed line raises with its line number."""
    with open_text(path) as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({e})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
            yield row


def write_jsonl(path, rows: Iterable[dict]) -> int:
    """Write rows atomically (temp file + rename) so a crash never leaves half a dataset.

    A path ending in .gz is gzip-compressed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    n = 0
    opener = (lambda p: gzip.open(p, "wt", encoding="utf-8")) if path.suffix == ".gz" else (lambda p: open(p, "w", encoding="utf-8"))
    with opener(tmp) as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    os.replace(tmp, path)
    return n
