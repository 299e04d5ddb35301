"""The repository stands on its own: code, tests, notebooks and benchmarks cite docs/ pages that exist, and nothing
outside the repository (the shared spec folder, numbered issues)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ["shadowkv_lab", "tests", "notebooks", "benchmarks", "scripts"]
SUFFIXES = {".py", ".ipynb", ".md", ".sh"}
OUTSIDE = re.compile(r"\.\./shared|shared/spec|\bissue \d|(?<![&\w])#\d{1,3}\b(?![0-9A-Fa-f])")
DOC_REF = re.compile(r"docs/([\w-]+\.md)")


def _files():
    for top in SOURCES:
        for p in (ROOT / top).rglob("*"):
            if p.suffix in SUFFIXES and p.is_file() and p.name != Path(__file__).name:
                yield p


def test_no_reference_leaves_the_repository():
    bad = [f"{p.relative_to(ROOT)}:{i}: {line.strip()[:80]}" for p in _files()
           for i, line in enumerate(p.read_text(errors="replace").splitlines(), 1) if OUTSIDE.search(line)]
    assert not bad, "references outside the repository:\n" + "\n".join(bad)


def test_every_cited_doc_exists():
    cited = {m for p in _files() for m in DOC_REF.findall(p.read_text(errors="replace"))}
    assert {"algorithms.md", "tasks.md", "paper.md"} <= cited
    missing = sorted(c for c in cited if not (ROOT / "docs" / c).is_file())
    assert not missing, f"cited but not in docs/: {missing}"
