"""Provenance columns stamped on every results row: which code, libraries, hardware and precision produced it."""

from __future__ import annotations

import datetime
import functools
import os
import re
from pathlib import Path

import torch


def _git_dir(start: Path) -> Path | None:
    """The .git folder of the checkout holding `start` (a worktree's `.git` file points at the real one)."""
    for d in [start, *start.parents]:
        g = d / ".git"
        if g.is_dir():
            return g
        if g.is_file():  # worktree or submodule: "gitdir: <path>"
            text = g.read_text().strip()
            if text.startswith("gitdir:"):
                p = Path(text[len("gitdir:"):].strip())
                return p if p.is_absolute() else (d / p).resolve()
    return None


COMMIT_ENV = "SHADOWKV_LAB_COMMIT"


def git_commit() -> str | None:
    """The commit that produced the code: $SHADOWKV_LAB_COMMIT when set (a copy of the tree run on another machine,
    whose .git may be older than the files: a GPU host that receives the working tree), else the HEAD of the
    package's checkout (_head_commit)."""
    given = os.environ.get(COMMIT_ENV)
    if given is None:
        return _head_commit()
    if not re.fullmatch(r"[0-9a-f]{40}", given):
        raise ValueError(f"{COMMIT_ENV}={given!r}: must be a full 40-character lowercase hex commit (git rev-parse HEAD)")
    return given


@functools.lru_cache(maxsize=1)
def _head_commit() -> str | None:
    """HEAD commit of the package's checkout, read from the .git files (no git subprocess); None when the package
    is not in a git checkout (an installed wheel) or HEAD cannot be resolved."""
    gd = _git_dir(Path(__file__).resolve().parent)
    if gd is None:
        return None
    try:
        head = (gd / "HEAD").read_text().strip()
        if not head.startswith("ref:"):
            return head or None  # detached HEAD holds the sha itself
        ref = head[len("ref:"):].strip()
        common = gd
        if (gd / "commondir").exists():  # worktrees keep refs in the main repository
            common = (gd / (gd / "commondir").read_text().strip()).resolve()
        for root in (gd, common):
            if (root / ref).exists():
                return (root / ref).read_text().strip()
        for root in (gd, common):
            packed = root / "packed-refs"
            if packed.exists():
                for line in packed.read_text().splitlines():
                    if line.endswith(" " + ref):
                        return line.split()[0]
    except OSError:
        pass
    return None  # a fresh repository without commits


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def provenance(model=None, process_rank: int = 0) -> dict:
    """Columns for one run: package_version, git_commit, torch_version, transformers_version, device (e.g. "cuda:0"),
    device_name (GPU model or "cpu"), dtype (model parameter dtype), timestamp (UTC ISO-8601), process_rank."""
    import transformers

    from . import __version__

    device, dtype = torch.device("cpu"), None
    if model is not None:
        p = next(model.parameters())
        device, dtype = p.device, _dtype_name(p.dtype)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return {
        "package_version": __version__, "git_commit": git_commit(), "torch_version": torch.__version__,
        "transformers_version": transformers.__version__, "device": str(device), "device_name": name, "dtype": dtype,
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "process_rank": process_rank,
    }
