"""The study's reproduction grid (arXiv 2604.08426, docs/reproduction.md): its data files, methods and parts.

benchmarks/reproduce.py runs the parts into one results store; the workbook's full profile reads the same data files
(`run_all.sh --data-dir`), so its notebooks share that store's cells instead of generating samples of their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .cache.presets import SHADOWKV_BUDGET, YAKV_BUDGET, chunk_size_ablation, landmark_precision, resolve, with_budget

MODEL = "qwen2.5-coder-1.5b"

# Every task: full attention, the oracle bound at both budgets, ShadowKV at the four budget readings, the rank matched
# to H*d, the 2x2 attribution, YAKV as published, YAKV with centred keys (docs/key_offset.md) and with exact keys.
MAIN = ["full", "oracle", f"oracle@{2 * SHADOWKV_BUDGET:g}", "shadowkv", f"shadowkv@{2 * SHADOWKV_BUDGET:g}",
        "shadowkv@2048t", f"shadowkv@{10 * SHADOWKV_BUDGET:g}", "shadowkv_scaled", "shadowkv_fullkeys",
        "shadowkv_oracle", "yakv", "yakv_centred", "yakv_exactkv"]


def ablation_groups() -> dict[str, list]:
    """Text2JSON 16k only, by axis: chunk size (bf16 landmarks, exact keys), landmark precision at chunk 1 (residual
    landmarks among them), and budget sweeps for the accuracy-versus-memory frontier."""
    return {
        "chunk_size": [chunk_size_ablation(c) for c in (1, 2, 4, 8, 16)],
        "landmark_precision": [landmark_precision(p) for p in ("fp8", "nvfp4", "higgs4", "higgs3", "higgs2", "higgs1",
                                                                 "residual")],
        "budget": [with_budget(resolve("shadowkv"), SHADOWKV_BUDGET * k) for k in (0.5, 4)]
        + [with_budget(resolve("yakv_centred"), YAKV_BUDGET * k) for k in (0.25, 0.5, 2)],
    }


def ablations() -> list:
    """Every config of ablation_groups, in order."""
    return [c for group in ablation_groups().values() for c in group]


@dataclass(frozen=True)
class Part:
    """One reproduction command: a task's data file, its samples (None: all), its methods (None: the ablations)
    and its rows per wave (an upper bound; the runner fits waves to memory)."""

    task: str
    data: str
    n: int | None
    methods: tuple | None
    batch_size: int
    tokens: int | None  # the prompt length the data file was generated at (None: the task's own lengths)


PARTS = {
    "t2j16_main": Part("text2json", "t2j_16k.jsonl", 48, tuple(MAIN), 256, 16384),
    "t2j16_ablation": Part("text2json", "t2j_16k.jsonl", 48, None, 256, 16384),
    "mn16_main": Part("multineedle", "mn_16k.jsonl", 40, tuple(MAIN), 256, 16384),
    "niah16_main": Part("ruler_niah_single", "niah_16k.jsonl", 40, tuple(MAIN), 256, 16384),
    "niahmk16_main": Part("ruler_niah_multikey", "niahmk_16k.jsonl", 40, tuple(MAIN), 256, 16384),
    "t2j8_main": Part("text2json", "t2j_8k.jsonl", 48, tuple(MAIN), 320, 8192),
    "mn30_main": Part("multineedle", "mn_30k.jsonl", 40, tuple(MAIN), 160, 30000),
    # 192 rows, not 512: a row must finish inside one 10-minute call (a cut call loses the rows still decoding), and
    # in a full wave of 192 a 2,048-token answer takes about 460 s; fewer rows decode more slowly in all
    # (benchmarks/wave_model.py, docs/reproduction.md).
    "longproc_main": Part("longproc_html_to_tsv", "longproc_2k.jsonl", None, tuple(MAIN), 192, None),
}

# LongProc's 2k split has pages of up to ~81k tokens: the tasks whose prompt plus 2,048-token cap exceeds the 1.5B's
# 32,768-token context (48 of 189) are left out and listed; every other part must fit whole.
SKIP_OVER_CONTEXT = {"longproc_main"}

# (task, prompt tokens) -> data file: every part's file, and the variable-tracking file that only the workbook's
# full profile reads (notebook 01's fifth task; docs/reproduction.md has the command that writes each).
DATA_FILES = {(p.task, p.tokens): p.data for p in PARTS.values() if p.tokens is not None}
DATA_FILES[("ruler_vt", 16384)] = "vt_16k.jsonl"


def methods_of(part: str) -> list:
    """The configs of one part."""
    m = PARTS[part].methods
    return ablations() if m is None else [resolve(x) for x in m]


def data_file(data_dir, task: str, tokens: int) -> Path:
    """The study's data file of a task at a prompt length, which must exist under data_dir."""
    name = DATA_FILES.get((task, int(tokens)))
    if name is None:
        known = ", ".join(f"{t}@{k}" for t, k in sorted(DATA_FILES))
        raise ValueError(f"the study has no data file for task {task!r} at {tokens} tokens; it has: {known}")
    path = Path(data_dir) / name
    if not path.is_file():
        raise FileNotFoundError(f"{task} at {tokens} tokens: data file {path} missing "
                                "(docs/reproduction.md has the command that writes it)")
    return path
