"""Results store: a folder of Parquet shards, one per finished wave of the runner, appended atomically.

    out/part-r000-<time>-<pid>-<seq>.parquet   tidy rows, one per model x task x sample x method (ROW_COLUMNS)
    out/records/part-...parquet                 attention-level rows of record=True runs (RECORD_KEYS + recorder columns)

Why shards and not one file: a run is killed at any moment (preemption, OOM, Ctrl-C); appending to a single file
would risk the whole table, while a shard is written to a hidden temp file in the same folder, fsynced, then
renamed into place (os.replace is atomic on POSIX), so a reader sees either the whole shard or nothing. Several
processes (torchrun ranks) write their own shards without locking. Loading is one call: `load(out)`.

One store per experiment: a cell is (model, task, sample_id, config_hash, recorded). `recorded` says that the
cell's attention records are stored too; recording only observes, so a recorded row also serves a request without
recording, and `load` returns one row per (model, task, sample_id, config_hash), the recorded one first.
`make_row` is the one builder of a results row (the runner and the workbook's demo data use it).

Benchmark rows (BENCH_COLUMNS, one measurement per row) are a second, smaller schema: `bench_row` builds one,
`write_bench_rows` / `read_bench_rows` write and read a `<name>.rows.csv` file atomically and validated.
"""

from __future__ import annotations

import itertools
import json
import math
import numbers
import os
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

KEY = ("model", "task", "sample_id", "config_hash")  # one cell of the grid; the runner skips cells already stored
RECORDED = "recorded"  # the last part of a cell's key: True when its attention records are stored (records/)
RECORDS = "records"
RECORD_KEYS = ("model", "task", "sample_id", "method", "config_hash")
# Attention records' statistics are fractions, relative errors and relative positions, mostly in [0, 1]: kept to
# 1e-4 as float32, far below what a mean over steps or a figure resolves. Full float64 mantissas do not compress (about
# 250 kB a recorded 16k Text2JSON cell); rounded, the records take about a fifth of that.
RECORD_DECIMALS = 4

# Fixed columns of a results row, in order. Rows also carry metric_<key> (every score key of the task),
# meta_<key> (scalar sample meta) and mem_<key> (every MemoryReport.to_dict() key, e.g. "mem_device:landmarks").
ROW_COLUMNS = (
    "model", "task", "sample_id", "method", "config_hash", "config",
    "prompt_tokens", "new_tokens", "finish_reason", "prediction", "token_ids", "score", "metrics",
    "prefill_s", "build_s", "decode_s", "decode_tok_s", "batch_rows", "batch_methods",
    "kind", "rank", "chunk_size", "sparse_budget", "budget_tokens",
    "landmark_format", "key_format", "value_format", "landmark_bits", "key_bits", "value_bits",
    "mem_device_bytes", "mem_offloaded_bytes", "mem_device_bytes_per_token_layer", "mem_offloaded_bytes_per_token_layer",
    "fallback", "recorded",
    "package_version", "git_commit", "torch_version", "transformers_version", "device", "device_name", "dtype",
    "timestamp", "process_rank",
)

PROVENANCE_COLUMNS = ROW_COLUMNS[ROW_COLUMNS.index("package_version"):]

_seq = itertools.count()


def _is_scalar(v) -> bool:
    return v is None or isinstance(v, (str, int, float, bool))


def config_columns(config, n_kv_heads: int, head_dim: int, prompt_len: int, dtype_bits: int) -> dict:
    """The method's columns of a row: kind, rank (resolved for the model; the config column keeps a share of H*d
    as given), chunk size, budgets, formats and their bits per element (cache.memory.format_bits)."""
    from .cache.memory import format_bits

    return {
        "kind": config.kind, "rank": config.rank_for(n_kv_heads, head_dim), "chunk_size": config.chunk_size,
        "sparse_budget": float(config.sparse_budget),
        "budget_tokens": None if config.kind == "full" else config.budget_tokens(prompt_len),
        "landmark_format": config.landmark_format, "key_format": config.key_format, "value_format": config.value_format,
        **format_bits(config, n_kv_heads, head_dim, dtype_bits),
    }


def make_row(*, model: str, task: str, sample_id, config, primary_metric: str, metrics: dict, prediction: str,
             prompt_tokens: int, new_tokens: int, finish_reason: str, n_kv_heads: int, head_dim: int, dtype_bits: int,
             memory: dict, prefill_s: float, decode_s: float, build_s: float = math.nan, batch_rows: int = 1,
             batch_methods: str | None = None, decode_share_s: float = math.nan, token_ids=None, fallback: str = "",
             recorded: bool = False, meta: dict | None = None, provenance: dict | None = None) -> dict:
    """One results row: ROW_COLUMNS in order, then metric_<key> (every score key of the task), meta_<key> (scalar
    sample meta) and mem_<key> (every MemoryReport.to_dict() key). `memory` is MemoryReport.to_dict();
    `provenance` the provenance.provenance() columns (missing ones are null). batch_rows, batch_methods: the decode
    call the row ran in (its row count; its distinct method names, sorted, comma-joined; default: this method alone).
    decode_share_s: the row's share of the wall time of the decode calls it ran in, each call's time split among its
    rows by the tokens each made there; over a run's rows the shares add up to its decode time, so tokens over shares
    is the grid's measured decode rate, tails and re-stacks included (decode_s is the row's own time, which counts
    every second once per row of its batch).
    The decode step is batch-invariant, so these describe the run, never the numbers."""
    unknown = set(provenance or {}) - set(PROVENANCE_COLUMNS)
    if unknown:
        raise ValueError(f"unknown provenance columns {sorted(unknown)}; allowed {PROVENANCE_COLUMNS}")
    n = int(new_tokens)
    row = {
        "model": model, "task": task, "sample_id": str(sample_id), "method": config.name, "config_hash": config.config_hash(),
        "config": json.dumps(config.to_dict(), sort_keys=True), "prompt_tokens": int(prompt_tokens), "new_tokens": n,
        "finish_reason": finish_reason, "prediction": prediction,
        "token_ids": None if token_ids is None else json.dumps(list(token_ids)),
        "score": metrics.get(primary_metric, math.nan), "metrics": json.dumps(metrics, sort_keys=True),
        "prefill_s": prefill_s, "build_s": build_s, "decode_s": decode_s,
        # tokens made by decode steps (the first comes from the prefill logits) per second of this row's decode
        "decode_tok_s": (n - 1) / decode_s if n > 1 and decode_s > 0 else math.nan, "batch_rows": int(batch_rows),
        "batch_methods": config.name if batch_methods is None else batch_methods, "decode_share_s": decode_share_s,
        **config_columns(config, n_kv_heads, head_dim, prompt_len=int(prompt_tokens), dtype_bits=dtype_bits),
        **{f"mem_{k}": v for k, v in memory.items()},
        "fallback": fallback, "recorded": bool(recorded),
        **{c: (provenance or {}).get(c) for c in PROVENANCE_COLUMNS},
        **{f"metric_{k}": v for k, v in metrics.items()},
        **{f"meta_{k}": v for k, v in (meta or {}).items() if _is_scalar(v)},
    }
    missing = [c for c in ROW_COLUMNS if c not in row]
    if missing:  # the memory report lost a total column: the schema would silently change
        raise ValueError(f"a results row lacks {missing}")
    return {**{c: row[c] for c in ROW_COLUMNS}, **row}


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


def _write_atomically(final: Path, tmp: Path, write, mode: str) -> Path:
    """Write `final` through `tmp` (same folder): write(f), flush, fsync, rename into place, fsync the folder so that
    the rename itself is durable. A reader sees the whole file or none; a failed write leaves no temp file."""
    try:
        with open(tmp, mode, **({} if "b" in mode else {"newline": ""})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(final.parent)
    return final


def compact_records(table: pa.Table) -> pa.Table:
    """A records table with every float column rounded to RECORD_DECIMALS and stored as float32 (idempotent)."""
    return pa.table({name: pc.round(col.cast(pa.float64()), RECORD_DECIMALS).cast(pa.float32())
                     if pa.types.is_floating(col.type) else col for name, col in zip(table.column_names, table.columns)})


def _write_table(table: pa.Table, final: Path) -> Path:
    return _write_atomically(final, final.parent / f".tmp-{final.name}",
                             lambda f: pq.write_table(table, f, compression="zstd"), "wb")


def compact_store_records(path) -> tuple[int, int]:
    """Rewrite a store's older records shards (full float64) compacted in place, each atomically under its own name,
    so that load_records keeps pairing it with its rows shard. Returns (bytes before, bytes after)."""
    before = after = 0
    for f in shards(Path(path) / RECORDS):
        before += f.stat().st_size
        table = pq.read_table(f)
        small = compact_records(table)
        if not small.equals(table):
            _write_table(small, f)
        after += f.stat().st_size
    return before, after


class ResultsWriter:
    """Appends shards to a results folder (`table="records"` writes to its records/ subfolder, compact_records).

    rank: the writing process's rank, part of every shard name so that torchrun ranks never collide.
    """

    def __init__(self, path, rank: int = 0, table: str | None = None):
        self.dir = Path(path) / table if table else Path(path)
        self.rank = rank
        self.records = table == RECORDS

    def new_name(self) -> str:
        return f"part-r{self.rank:03d}-{time.time_ns():x}-{os.getpid()}-{next(_seq):05d}.parquet"

    def write(self, rows: list[dict], name: str | None = None) -> Path | None:
        """Write `rows` as ONE new shard, atomically (temp file + fsync + rename). Returns its path (None if no rows).
        name: the shard's file name (default: a fresh unique one)."""
        if not rows:
            return None
        self.dir.mkdir(parents=True, exist_ok=True)
        table = to_table(rows)
        # the temp file's dot prefix (_write_table): ignored by load() and by pyarrow datasets
        return _write_table(compact_records(table) if self.records else table, self.dir / (name or self.new_name()))


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
            cols = [c for c in columns if c in pq.read_schema(f).names] if columns else None
            tables.append(pq.read_table(f, columns=cols))
        except Exception as e:  # a foreign or damaged file: say which one
            raise ValueError(f"cannot read results shard {f}: {e}") from e
    try:
        df = pa.concat_tables(tables, promote_options="permissive").to_pandas()
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        # Shards disagree on a column's type: let pandas fall back to object columns.
        df = pd.concat([t.to_pandas() for t in tables], ignore_index=True)
    cols = [c for c in first if c in df.columns]
    return df[cols + sorted(c for c in df.columns if c not in cols)]


def _with_recorded(path, df: pd.DataFrame) -> pd.DataFrame:
    """Fill `recorded` for rows written before it was a column: a row is recorded when the store holds attention
    records of its cell."""
    col = df[RECORDED] if RECORDED in df else pd.Series(None, index=df.index, dtype=object)
    if col.notna().all():
        return df.assign(**{RECORDED: col.astype(bool)})
    rec = load_records(path)
    cells = set(zip(*(rec[k].astype(str) for k in KEY))) if len(rec) else set()
    legacy = [tuple(map(str, t)) in cells for t in zip(*(df[k] for k in KEY))]
    return df.assign(**{RECORDED: [bool(v) if v is not None and v == v else lg for v, lg in zip(col, legacy)]})


def load(path, all_rows: bool = False) -> pd.DataFrame:
    """The result rows under `path` as one DataFrame (fixed ROW_COLUMNS first, then metric_/meta_/mem_ columns
    sorted), one row per (model, task, sample_id, config_hash): a recorded row first, else the oldest
    (all_rows=True keeps every stored row). An empty DataFrame with ROW_COLUMNS when nothing has been written yet.
    `config` and `metrics` are JSON strings: `df.config.map(json.loads)`; so is `token_ids` (the generated ids, for
    exact comparisons)."""
    df = _read(path, first=ROW_COLUMNS)
    if df is None:
        return pd.DataFrame(columns=list(ROW_COLUMNS))
    df = _with_recorded(path, df)
    if all_rows:
        return df
    first = df.sort_values(RECORDED, ascending=False, kind="stable").drop_duplicates(list(KEY))
    return df.loc[sorted(first.index)].reset_index(drop=True)


def load_records(path) -> pd.DataFrame:
    """Attention-level rows (path/records/): RECORD_KEYS + the recorder's columns (row, step, layer, head, recall, ...).

    The runner writes a wave's records shard first, under the same name as the wave's rows shard; a records shard
    counts only once its rows shard exists, so a run killed between the two writes leaves no duplicate on resume."""
    root = Path(path)
    df = _read(root / RECORDS, first=RECORD_KEYS, only=lambda f: (root / f.name).exists())
    return pd.DataFrame(columns=list(RECORD_KEYS)) if df is None else df


def done_keys(path, recorded: bool = False) -> set[tuple[str, str, str, str]]:
    """(model, task, sample_id, config_hash) of every stored row (recorded=True: of every recorded row): the cells a
    rerun skips."""
    df = _read(path, columns=(*KEY, RECORDED))
    if df is None:
        return set()
    if recorded:
        df = _with_recorded(path, df)
        df = df[df[RECORDED]]
    return set(zip(*(df[k].astype(str) for k in KEY)))


# ---------------------------------------------------------------------------------------------------------------------
# Benchmark rows: tidy, one per measurement, a fixed set of columns (benchmarks/*.py write them, analysis reads them).

# benchmark: the script's name (bench_decode_step, ...); run: one run of it (rows of one call share it); table: what
# the script measured (steps, scoring, hits, ...); model: a model name or the shapes timed; method: a method name, a
# landmark format or a kernel; variant: the setting within the method (nocache, a scoring rule, a launch shape);
# context, batch: tokens per sequence and sequences (empty when not one); metric, value, unit: the number, with the
# unit BENCH_UNITS fixes for the metric; commit, timestamp: the code and the time of the measurement; detail: a short
# free note (at most BENCH_DETAIL_CHARS characters).
BENCH_COLUMNS = ("benchmark", "run", "table", "device_name", "model", "method", "variant", "context", "batch",
                 "metric", "value", "unit", "commit", "timestamp", "detail")
BENCH_SUFFIX = ".rows.csv"  # a benchmark rows file; load_bench_rows(folder) reads every *.rows.csv in it
BENCH_DETAIL_CHARS = 300

# Every metric a benchmark row may carry, with its one unit.
BENCH_UNITS = {
    # decode step (one layer) and whole-model steps
    "step_ms": "ms", "bound_ms": "ms", "sum_bound_ms": "ms", "triton_ms": "ms", "sdpa_ms": "ms", "call_ms": "ms",
    "ratio_to_bound": "x", "ratio_to_full": "x", "tok_s": "tok/s", "tok_s_layer": "tok/s", "hit_rate": "share",
    "hbm_bytes": "bytes", "pcie_bytes": "bytes", "pcie_gb_s": "GB/s", "rows_fetched": "count", "rows_selected": "count",
    "union_tokens": "count",
    # landmark scoring and the zero-copy gather
    "ns_per_landmark": "ns", "bytes_per_landmark": "bytes", "gb_s": "GB/s", "zero_copy_gb_s": "GB/s",
    "memcpy_gb_s": "GB/s", "mrows_s": "Mrows/s",
    # capacity under a memory cap
    "max_batch": "count", "batch_vs_full": "x", "bytes_per_token_layer": "bytes", "gb_per_sequence": "GB",
    "part_gb": "GB", "verify_fits": "bool", "verify_next_fails": "bool", "verify_allocated_gb": "GB",
    # memory of a cache, per token and layer
    "device_bytes_per_token_layer": "bytes", "offloaded_bytes_per_token_layer": "bytes", "cache_gpu_gb": "GB",
    # runner against the naive loop, whole-model profiles
    "wall_s": "s", "prefill_s": "s", "decode_s": "s", "prefills": "count", "prefill_tokens": "count",
    "decode_tokens": "count", "cells": "count", "cells_per_s": "1/s", "wall_s_grid_estimate": "s", "speedup": "x",
    "identical_tokens": "bool", "identical_scores": "bool", "prompt_tokens_mean": "tokens", "rows": "count",
    "decode_steps": "count", "decode_calls": "count", "live_rows_mean": "rows",
    "weight_bytes": "bytes", "device_kv_bytes": "bytes", "op_count": "count", "self_device_us": "us", "self_cpu_us": "us",
    "setup_ms": "ms", "capture_ms": "ms", "eager_step_ms": "ms", "group_ms": "ms", "phase_ms": "ms",
    # quantizer error
    "bits_per_dim": "bits", "rel_mse_gaussian": "relative", "rel_mse_real": "relative",
    # Triton decode path against the torch reference
    "identical": "bool", "first_divergence": "token", "n_tokens": "count", "reference_margin": "logit",
    "max_logit_diff": "logit", "median_logit_diff": "logit", "kernels_s": "s", "reference_s": "s",
}
# The phases of an offloaded decode step that bench_decode_step.py --phases times (table step_phases, metric phase_ms,
# variant 'cache/<phase>' or 'nocache/<phase>'), in the step's order.
STEP_PHASES = ("score", "select", "hits", "fetch", "attend")
_BENCH_INT = ("context", "batch")
_BENCH_TEXT = tuple(c for c in BENCH_COLUMNS if c not in (*_BENCH_INT, "value"))
_BENCH_REQUIRED = ("benchmark", "run", "table", "device_name", "metric", "unit", "timestamp")


def bench_row(*, benchmark: str, run: str, table: str, device_name: str, metric: str, value, model: str = "",
              method: str = "", variant: str = "", context=None, batch=None, commit: str | None = "",
              timestamp: str = "", detail: str = "") -> dict:
    """One benchmark row (BENCH_COLUMNS in order); the unit comes from BENCH_UNITS[metric]. Raises ValueError on an
    unknown metric, a non-numeric value, a non-integer context or batch, a missing required field or a long detail."""
    if metric not in BENCH_UNITS:
        raise ValueError(f"unknown benchmark metric {metric!r}; allowed: {sorted(BENCH_UNITS)}")
    row = dict(benchmark=benchmark, run=run, table=table, device_name=device_name, model=model, method=method,
               variant=variant, context=context, batch=batch, metric=metric, value=value, unit=BENCH_UNITS[metric],
               commit=commit or "", timestamp=timestamp, detail=detail)
    return _check_bench_row(row, where=f"{benchmark} {table} {metric}")


def _check_bench_row(row: dict, where: str) -> dict:
    for c in _BENCH_REQUIRED:
        if not isinstance(row[c], str) or not row[c].strip():
            raise ValueError(f"benchmark row ({where}): {c}={row[c]!r}; must be a non-empty string")
    for c in _BENCH_TEXT:
        if not isinstance(row[c], str):
            raise ValueError(f"benchmark row ({where}): {c}={row[c]!r}; must be a string ('' when not known)")
    if row["metric"] not in BENCH_UNITS:
        raise ValueError(f"benchmark row ({where}): unknown metric {row['metric']!r}; allowed: {sorted(BENCH_UNITS)}")
    if row["unit"] != BENCH_UNITS[row["metric"]]:
        raise ValueError(f"benchmark row ({where}): unit {row['unit']!r} for {row['metric']}; must be {BENCH_UNITS[row['metric']]!r}")
    v = row["value"]
    if isinstance(v, bool) or type(v).__name__ == "bool_":  # Python or numpy bool: 1.0 / 0.0
        v = float(v)
    if isinstance(v, str) or not isinstance(v, numbers.Real) or not math.isfinite(float(v)):
        raise ValueError(f"benchmark row ({where}): value={row['value']!r}; must be a finite number")
    row["value"] = float(v)
    for c in _BENCH_INT:
        x = row[c]
        if x is None or (isinstance(x, str) and not x.strip()) or (not isinstance(x, str) and pd.isna(x)):
            row[c] = None
            continue
        try:
            ok = not isinstance(x, bool) and float(x).is_integer() and float(x) >= 0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ValueError(f"benchmark row ({where}): {c}={x!r}; must be a non-negative integer or empty")
        row[c] = int(float(x))
    if len(row["detail"]) > BENCH_DETAIL_CHARS:
        raise ValueError(f"benchmark row ({where}): detail of {len(row['detail'])} characters; at most {BENCH_DETAIL_CHARS}")
    try:
        pd.Timestamp(row["timestamp"])
    except ValueError as e:
        raise ValueError(f"benchmark row ({where}): timestamp={row['timestamp']!r}; must be ISO 8601 (e.g. 2026-11-29T01:07:38+00:00)") from e
    return {c: row[c] for c in BENCH_COLUMNS}


def check_bench_rows(df: pd.DataFrame, source: str = "benchmark rows") -> pd.DataFrame:
    """`df` validated against the schema: exactly BENCH_COLUMNS (in any order), every row passing bench_row's checks.
    Returns a copy with the columns in order, context / batch as nullable integers and value as float."""
    missing = [c for c in BENCH_COLUMNS if c not in df.columns]
    extra = [c for c in df.columns if c not in BENCH_COLUMNS]
    if missing or extra:
        raise ValueError(f"{source}: columns do not match the benchmark schema: missing {missing}, unexpected {extra}; "
                         f"expected {list(BENCH_COLUMNS)}")
    text = {c: df[c].astype(object).where(df[c].notna(), "").map(str) for c in _BENCH_TEXT}
    rows = []
    for i in range(len(df)):
        r = {c: text[c].iloc[i] if c in text else df[c].iloc[i] for c in BENCH_COLUMNS}
        if isinstance(r["value"], str):
            try:
                r["value"] = float(r["value"])
            except ValueError:
                pass
        try:
            rows.append(_check_bench_row(r, where=f"row {i}"))
        except ValueError as e:
            raise ValueError(f"{source}: {e}") from None
    out = pd.DataFrame(rows, columns=list(BENCH_COLUMNS))
    for c in _BENCH_INT:
        out[c] = out[c].astype("Int64")
    return out.astype({"value": float})


def write_bench_rows(rows, path, append: bool = False) -> Path:
    """Write benchmark rows (dicts from bench_row, or a DataFrame) as CSV to `path` (a name ending in BENCH_SUFFIX),
    atomically: a temp file in the same folder, fsynced, renamed into place. append=True keeps the rows already in
    `path` (validated) before the new ones. Returns the path."""
    path = Path(path)
    if not path.name.endswith(BENCH_SUFFIX):
        raise ValueError(f"benchmark rows file {path}: the name must end in {BENCH_SUFFIX!r}")
    if not isinstance(rows, pd.DataFrame):  # dicts: a key outside the schema is an error, not dropped
        rows = list(rows)
        rows = pd.DataFrame(rows) if rows else pd.DataFrame(columns=list(BENCH_COLUMNS))
    df = check_bench_rows(rows, str(path))
    if append and path.exists():
        df = pd.concat([read_bench_rows(path), df], ignore_index=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    return _write_atomically(path, path.parent / f".tmp-{os.getpid()}-{path.name}",
                             lambda f: df.to_csv(f, index=False, float_format="%.17g"), "w")


def read_bench_rows(path) -> pd.DataFrame:
    """The rows of one benchmark rows file, validated (check_bench_rows); ValueError names the file and the problem."""
    path = Path(path)
    try:
        df = pd.read_csv(path, dtype={c: str for c in _BENCH_TEXT}, keep_default_na=False, na_values={"value": [""], "context": [""], "batch": [""]})
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read benchmark rows {path}: {e}") from e
    return check_bench_rows(df, str(path))


def load_bench_rows(path) -> pd.DataFrame:
    """Every benchmark row under `path`: a rows file, or a folder's *.rows.csv (sorted by name), with a `source`
    column (the file name) after BENCH_COLUMNS. Empty (those columns) when there is none."""
    path = Path(path)
    files = sorted(path.glob(f"*{BENCH_SUFFIX}")) if path.is_dir() else ([path] if path.is_file() else [])
    frames = [read_bench_rows(f).assign(source=f.name) for f in files]
    if not frames:
        return pd.DataFrame(columns=[*BENCH_COLUMNS, "source"])
    return pd.concat(frames, ignore_index=True)
