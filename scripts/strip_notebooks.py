#!/usr/bin/env python
"""Strip outputs, execution counts and run metadata from notebooks, so git only ever holds their source.

    python scripts/strip_notebooks.py                 # every notebooks/*.ipynb, in place
    python scripts/strip_notebooks.py a.ipynb b.ipynb
    python scripts/strip_notebooks.py --check         # exit 1 (listing them) if any notebook is not stripped
    python scripts/strip_notebooks.py --stdin < a.ipynb   # stripped copy on stdout: the git clean filter

The clean filter (`.gitattributes`: `*.ipynb filter=strip-notebooks`, registered in .git/config by
scripts/ensure_env.sh) strips what git stores, so saving a notebook in JupyterLab never puts outputs in a commit;
`.pre-commit-config.yaml` runs --check as well.

Executed copies (with outputs) live under outputs/notebooks/, which git ignores. Cell tags (e.g. `parameters`
for papermill) are kept; papermill's and Jupyter's per-run metadata are dropped.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUN_METADATA = ("papermill", "execution", "widgets", "collapsed", "scrolled", "ExecuteTime")


def strip(nb: dict) -> dict:
    """The notebook without outputs, execution counts or run metadata (a new dict; the input is untouched)."""
    nb = json.loads(json.dumps(nb))
    for key in ("papermill", "widgets"):
        nb.get("metadata", {}).pop(key, None)
    for cell in nb.get("cells", []):
        meta = cell.get("metadata", {})
        for key in RUN_METADATA:
            meta.pop(key, None)
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
    return nb


def is_stripped(nb: dict) -> bool:
    return strip(nb) == nb


def _dump(nb: dict) -> str:
    # nbformat's own layout (indent 1, sorted keys, trailing newline) keeps diffs minimal
    return json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def filter_stream(src, dst) -> int:
    """Git clean filter: the notebook on `src`, stripped, on `dst`; text that is not a notebook passes unchanged."""
    text = src.read()
    try:
        nb = json.loads(text)
    except ValueError:
        dst.write(text)
        return 0
    dst.write(_dump(strip(nb)) if isinstance(nb, dict) and "cells" in nb else text)
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("paths", nargs="*", type=Path, help="notebooks (default: notebooks/*.ipynb)")
    p.add_argument("--check", action="store_true", help="only report notebooks that still have outputs")
    p.add_argument("--stdin", action="store_true", help="read one notebook on stdin, write it stripped to stdout (git filter)")
    a = p.parse_args(argv)
    if a.stdin:
        return filter_stream(sys.stdin, sys.stdout)
    paths = a.paths or sorted((ROOT / "notebooks").glob("*.ipynb"))
    dirty = []
    for path in paths:
        nb = json.loads(path.read_text(encoding="utf-8"))
        if is_stripped(nb):
            continue
        dirty.append(path)
        if not a.check:
            path.write_text(_dump(strip(nb)), encoding="utf-8")
            print(f"stripped {path}")
    if a.check and dirty:
        print("notebooks with outputs (run scripts/strip_notebooks.py):\n  " + "\n  ".join(map(str, dirty)), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
