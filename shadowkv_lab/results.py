"""Results store: a folder of Parquet shards, one per finished wave of the runner, appended atomically.

    out/part-r000-<time>-<pid>-<seq>.parquet   tidy rows, one per model x task x sample x method (ROW_COLUMNS)
    out/records/part-...parquet                 attention-level rows of record=True runs (RECORD_KEYS + recorder columns)

Why shards and not one file: a run is killed at any moment (preemption, OOM, Ctrl-C); appending to a single file
would risk the whole table, while a shard is written to a hidden temp file in the same folder, fsynced, then
renamed into place (os.replace is atomic on POSIX), so a reader sees either the whole shard or nothing. Several
processes (torchrun ranks) write their own shards without locking. Loading is one call: `load(out)`.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

KEY = ("model", "task", "sample_id", "config_hash")  # one cell of the grid; the runner skips cells already stored
RECORDS = "records"
RECORD_KEYS = ("model", "task", "sample_id", "method", "config_hash")

# Fixed columns of a results row, in order. Rows also carry metric_<key> (every score key of the task),
# meta_<key> (scalar sample meta) and mem_<key> (every MemoryReport.to_dict() key, e.g. "mem_device:landmarks").
ROW_COLUMNS = (
    "model", "task", "sample_id", "method", "config_hash", "config",
    "prompt_tokens", "new_tokens", "finish_reason", "prediction", "token_ids", "score", "metrics",
    "prefill_s", "build_s", "decode_s", "decode_tok_s", "batch_rows",
    "kind", "rank", "chunk_size", "sparse_budget", "budget_tokens",
    "landmark_format", "key_format", "value_format", "landmark_bits", "key_bits", "value_bits",
    "mem_device_bytes", "mem_offloaded_bytes", "mem_device_bytes_per_token_layer", "mem_offloaded_bytes_per_token_layer",
    "fallback",
    "package_version", "git_commit", "torch_version", "transformers_version", "device", "device_name", "dtype",
    "timestamp", "process_rank",
)

_seq = itertools.count()


def _column(values: list) -> pa.Array:
    """One Arrow column; a column mixing types that Arrow cannot unify (e.g. a meta key that is a str in one sample
    and an int in another) is stored as strings rather than failing the whole shard."""
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
        return pa.array([None if v is None else v if isinstance(v, str) else json.dumps(v, default=str) for v in values])


def to_table(rows: list[dict]) -> pa.Table:
    """Rows (flat dicts, possibly with different keys) -> Arrow table over the union of keys, missing = null."""
    names = list(dict.fromkeys(k for r in rows for k in r))
    return pa.table({k: _column([r.get(k) for r in rows]) for k in names})


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # not every filesystem lets us open a directory
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class ResultsWriter:
    """Appends shards to a results folder (`table="records"` writes to its records/ subfolder).

    rank: the writing process's rank, part of every shard name so that torchrun ranks never collide.
    """

    def __init__(self, path, rank: int = 0, table: str | None = None):
        self.dir = Path(path) / table if table else Path(path)
        self.rank = rank

    def new_name(self) -> str:
        return f"part-r{self.rank:03d}-{time.time_ns():x}-{os.getpid()}-{next(_seq):05d}.parquet"

    def write(self, rows: list[dict], name: str | None = None) -> Path | None:
        """Write `rows` as ONE new shard, atomically (temp file + fsync + rename). Returns its path (None if no rows).
        name: the shard's file name (default: a fresh unique one)."""
        if not rows:
            return None
        self.dir.mkdir(parents=True, exist_ok=True)
        name = name or self.new_name()
        final, tmp = self.dir / name, self.dir / f".tmp-{name}"  # dot prefix: ignored by load() and by pyarrow datasets
        try:
            with open(tmp, "wb") as f:
                pq.write_table(to_table(rows), f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(self.dir)  # make the rename itself durable
        return final


def shards(path) -> list[Path]:
    """Visible shards of one table folder, oldest name first; stray temp files of killed writers are skipped."""
    d = Path(path)
    if not d.is_dir():
        return []
    return sorted(p for p in d.glob("*.parquet") if not p.name.startswith(".") and p.is_file())


def _read(path, columns=None, first: tuple = (), only=None) -> pd.DataFrame | None:
    files = [f for f in shards(path) if only is None or only(f)]
    if not files:
        return None
    tables = []
    for f in files:
        try:
            tables.append(pq.read_table(f, columns=list(columns) if columns else None))
        except Exception as e:  # a foreign or damaged file: say which one
            raise ValueError(f"cannot read results shard {f}: {e}") from e
    try:
        df = pa.concat_tables(tables, promote_options="permissive").to_pandas()
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        # Shards disagree on a column's type: let pandas fall back to object columns.
        df = pd.concat([t.to_pandas() for t in tables], ignore_index=True)
    cols = [c for c in first if c in df.columns]
    return df[cols + sorted(c for c in df.columns if c not in cols)]


def load(path) -> pd.DataFrame:
    """All result rows under `path` as one DataFrame (fixed ROW_COLUMNS first, then metric_/meta_/mem_ columns
    sorted). An empty DataFrame with ROW_COLUMNS when nothing has been written yet. `config` and `metrics` are
    JSON strings: `df.config.map(json.loads)`; so is `token_ids` (the generated ids, for exact comparisons)."""
    df = _read(path, first=ROW_COLUMNS)
    return pd.DataFrame(columns=list(ROW_COLUMNS)) if df is None else df


def load_records(path) -> pd.DataFrame:
    """Attention-level rows (path/records/): RECORD_KEYS + the recorder's columns (row, step, layer, head, recall, ...).

    The runner writes a wave's records shard first, under the same name as the wave's rows shard; a records shard
    counts only once its rows shard exists, so a run killed between the two writes leaves no duplicate on resume."""
    root = Path(path)
    df = _read(root / RECORDS, first=RECORD_KEYS, only=lambda f: (root / f.name).exists())
    return pd.DataFrame(columns=list(RECORD_KEYS)) if df is None else df


def done_keys(path) -> set[tuple[str, str, str, str]]:
    """(model, task, sample_id, config_hash) of every stored row: the cells a rerun skips."""
    df = _read(path, columns=KEY)
    if df is None:
        return set()
    return set(zip(*(df[k].astype(str) for k in KEY)))
