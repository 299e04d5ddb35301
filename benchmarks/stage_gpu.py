"""Prepare .stage/ for a GPU machine without network that takes at most 64 MiB a call (benchmarks/gpu_session.sh).

    python benchmarks/stage_gpu.py --data data/reproduction --store results/reproduction/store

Writes (all under the git-ignored .stage/):
- m.00, m.01, ...: the offline model's GGUF (prepared here first if needed) in parts that fit one call each beside
  the tracked tree, which travels with every call: at most 60,000,000 bytes, less when the tree is large;
- data/: a copy of --data (the study's data files), store/: a copy of --store (the results store to resume);
- params/: the full profile's notebook parameters (run_all.sh --dry-run), their paths relative to the repository
  root so that they hold on the GPU machine: results into .stage/store, figures into .stage/figures;
- commit: this checkout's commit (SHADOWKV_LAB_COMMIT on the GPU machine);
and prints the calls: what each carries, every part in its own call, the last part with the store beside it, then
the work (benchmarks/gpu_session.sh stages). The machine goes cold 30 s after a call: make the calls back to back.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CALL_LIMIT = 64 * 2**20  # bytes one call may carry: the tracked tree plus what it names
PART_MAX = 60_000_000
MARGIN = 4 * 2**20  # the carried scripts and parameters, and room for commits made after staging (results, figures)


def tree_bytes(root: Path = ROOT) -> int:
    """Bytes of the tracked files and of the untracked files git does not ignore: what travels with every call."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                         capture_output=True, check=True).stdout
    return sum((root / p).stat().st_size for p in out.decode().split("\0") if p and (root / p).is_file())


def part_bytes(tree: int, limit: int = CALL_LIMIT, cap: int = PART_MAX, margin: int = MARGIN) -> int:
    """The largest part that fits one call beside the tree."""
    room = min(cap, limit - tree - margin)
    if room < 2**20:
        raise ValueError(f"the tree is {tree:,} bytes: under 1 MiB of a {limit:,}-byte call is left for a part")
    return room


def split(path: Path, size: int, out: Path, prefix: str = "m.") -> list[Path]:
    """Cut `path` into files of `size` bytes (the last one shorter), named prefix00, prefix01, ... in `out`."""
    if size < 1:
        raise ValueError(f"size={size}: must be >= 1")
    parts = []
    with open(path, "rb") as f:
        while chunk := f.read(size):
            p = out / f"{prefix}{len(parts):02d}"
            p.write_bytes(chunk)
            parts.append(p)
    if len(parts) > 100:
        raise ValueError(f"{path}: {len(parts)} parts, more than two digits can name")
    return parts


def plan_calls(parts: list[tuple[str, int]], extras: list[tuple[str, int]], room: int) -> list[list[str]]:
    """What each call carries: every part alone, in order, except that the extras (name, bytes) ride along where they
    fit, the last part's call first (that call assembles the model and may start the work); an extra that fits no
    part's call gets a call of its own before the last."""
    calls = [[name] for name, _ in parts]
    free = [room - size for _, size in parts]
    alone = []
    for name, size in extras:
        if size > room:
            raise ValueError(f"{name}: {size:,} bytes do not fit one call ({room:,} bytes beside the tree)")
        for i in [len(calls) - 1, *range(len(calls) - 1)]:
            if size <= free[i]:
                calls[i].append(name)
                free[i] -= size
                break
        else:
            alone.append([name])
    return calls[:-1] + alone + calls[-1:]


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


def _copy(src: Path, dst: Path) -> None:
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="qwen2.5-coder-1.5b")
    ap.add_argument("--data", required=True, help="a folder of the study's data files (docs/reproduction.md)")
    ap.add_argument("--store", required=True, help="the results store to resume on the GPU machine")
    ap.add_argument("--stage", default=str(ROOT / ".stage"))
    a = ap.parse_args(argv)
    from shadowkv_lab.models import OFFLINE_MODELS, cache_dir, prepare_model

    if a.model not in OFFLINE_MODELS:
        ap.error(f"--model {a.model!r}: not an offline model; known: {sorted(OFFLINE_MODELS)}")
    for name in ("data", "store"):
        if not Path(getattr(a, name)).is_dir():
            ap.error(f"--{name} {getattr(a, name)!r} is not a folder")
    stage = Path(a.stage)
    stage.mkdir(exist_ok=True)
    spec = OFFLINE_MODELS[a.model]
    prepare_model(a.model)
    gguf = cache_dir() / spec.sha256[:16] / spec.gguf_name
    for old in stage.glob("m.[0-9][0-9]"):
        old.unlink()
    room = part_bytes(tree_bytes())
    parts = split(gguf, room, stage)
    _copy(Path(a.data), stage / "data")
    _copy(Path(a.store), stage / "store")
    (stage / "commit").write_text(subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                                                 text=True, check=True).stdout)
    dry = stage / "dry"
    subprocess.run(["./run_all.sh", "--profile", "full", "--dry-run", "--data-dir", ".stage/data", "--store",
                    ".stage/store", "--out", str(dry)], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    (stage / "params").mkdir(exist_ok=True)
    for y in (dry / "params" / "full").glob("*.yaml"):
        text = y.read_text().replace(str(dry / "figures"), ".stage/figures").replace(f"{ROOT}/", "")
        (stage / "params" / y.name).write_text(text)
    shutil.rmtree(dry)
    rel = {p: f".stage/{p}" for p in ("data", "store", "params", "commit")}
    extras = [(rel["data"], _size(stage / "data")), (rel["store"], _size(stage / "store"))]
    calls = plan_calls([(f".stage/{p.name}", p.stat().st_size) for p in parts], extras, room)
    calls[0] += [rel["params"], rel["commit"]]
    print(f"{len(parts)} parts of {room:,} bytes (the tree is {tree_bytes():,}). Make call 1 alone: a machine that does "
          "not start still costs device time for each call sent after it. Then the others, back to back:")
    for i, carry in enumerate(calls, 1):
        print(f"  {i:2d}. carry {carry}")
    print("  the last one also runs: bash benchmarks/gpu_session.sh --model "
          f"{a.model} parts wheels prep ...  (carry .whl too if wheels are needed: gguf)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
