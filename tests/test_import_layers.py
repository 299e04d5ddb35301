"""The kernels do not import the cache: the cache (cache.batched's Triton backend) imports the kernels, and the top-k
rule both use lives in shadowkv_lab.selection. Checked by running the imports in a fresh interpreter and by reading
every import statement of kernels/ (function-level ones included)."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KERNELS = ROOT / "shadowkv_lab" / "kernels"


def _kernel_modules() -> list[str]:
    return sorted(f"shadowkv_lab.kernels.{p.stem}" for p in KERNELS.glob("*.py") if p.stem != "__init__")


def test_importing_the_kernels_loads_no_cache_module():
    pytest.importorskip("triton")
    mods = _kernel_modules()
    code = ("import importlib, json, sys\n"
            f"for m in {mods!r}:\n    importlib.import_module(m)\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith('shadowkv_lab'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    loaded = json.loads(out.splitlines()[-1])
    assert set(mods) <= set(loaded)
    assert not [m for m in loaded if m == "shadowkv_lab.cache" or m.startswith("shadowkv_lab.cache.")], loaded


def _is_cache(name: str) -> bool:
    """shadowkv_lab.cache or a module under it, absolute or relative to kernels/."""
    return any(name == top or name.startswith(top + ".") for top in ("shadowkv_lab.cache", "..cache"))


def test_no_kernel_source_imports_the_cache():
    bad = []
    for p in sorted(KERNELS.glob("*.py")):
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = "." * node.level + (node.module or "")
                names = [base] + [f"{base}.{a.name}" if node.module else f"{base}{a.name}" for a in node.names]
            else:
                continue
            if any(_is_cache(n) for n in names):
                bad.append(f"{p.name}:{node.lineno}")
    assert not bad, f"kernels importing the cache: {bad}"
