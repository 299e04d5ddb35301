"""The benchmarks' rows (shadowkv_lab.results.BENCH_COLUMNS, benchmarks/results/*.rows.csv) and the tables the
speed figures read."""

from __future__ import annotations

import pandas as pd

from ..results import BENCH_COLUMNS, load_bench_rows

SETTING = ("benchmark", "run", "device_name", "model", "method", "variant", "context", "batch")  # one measured setting


def load_benchmarks(path="benchmarks/results") -> pd.DataFrame:
    """Every benchmark row under `path` (a *.rows.csv file or a folder of them), validated against the schema
    (results.BENCH_COLUMNS; a file that breaks it raises ValueError naming the file, the row and the column), with a
    `source` column (the file name). Empty, with those columns, when there is none."""
    return load_bench_rows(path)


def newest_run(bench: pd.DataFrame, benchmark: str, table: str | None = None, run: str | None = None) -> pd.DataFrame:
    """The rows of one run of `benchmark` (and `table`): `run` by name, else the run with the newest timestamp.
    Empty when the benchmark has no rows; ValueError for a run name it does not have."""
    if bench is None or bench.empty:
        return pd.DataFrame(columns=list(BENCH_COLUMNS))
    b = bench[(bench["benchmark"] == benchmark) & ((bench["table"] == table) if table else True)]
    if b.empty:
        return b
    if run is None:
        ts = pd.to_datetime(b["timestamp"], utc=True, format="ISO8601")
        run = b.loc[ts.sort_values(kind="stable").index[-1], "run"]
    elif run not in set(b["run"]):
        raise ValueError(f"run={run!r}: no such run of {benchmark}{f' ({table})' if table else ''}; runs: {sorted(set(b['run']))}")
    return b[b["run"] == run]


def bench_table(bench: pd.DataFrame, table: str | None = None, benchmark: str | None = None) -> pd.DataFrame:
    """Benchmark rows (of `table`, `benchmark` when given) wide: one row per setting (SETTING columns), one column
    per metric, in the order the rows came."""
    if bench is None or bench.empty:
        return pd.DataFrame(columns=list(SETTING))
    b = bench[((bench["table"] == table) if table else True) & ((bench["benchmark"] == benchmark) if benchmark else True)]
    if b.empty:
        return pd.DataFrame(columns=list(SETTING))
    key = ["\x1f".join("" if pd.isna(v) else str(v) for v in t) for t in b[list(SETTING)].itertuples(index=False)]
    first = b.assign(_k=key).drop_duplicates("_k").set_index("_k")[list(SETTING)]
    wide = b.assign(_k=key).pivot_table(index="_k", columns="metric", values="value", aggfunc="last", sort=False)
    metrics = list(dict.fromkeys(b["metric"]))
    return first.join(wide[metrics]).reset_index(drop=True).rename_axis(columns=None)


def scoring_rows(bench: pd.DataFrame, run: str | None = None) -> pd.DataFrame:
    """The landmark-scoring cost per landmark of one bench_decode_step.py run (the newest by timestamp, or `run`):
    columns run, device_name, landmarks (the landmark format), rule (the scoring rule, or a tile / warps / kept-logits
    setting of --sweep-scoring), ns_per_landmark; the top-k rows are left out. Empty when there are none."""
    cols = ["run", "device_name", "landmarks", "rule", "ns_per_landmark"]
    s = newest_run(bench, "bench_decode_step", "scoring", run)
    s = s[(s["metric"] == "ns_per_landmark") & (s["method"] != "topk")] if len(s) else s
    if s.empty:
        return pd.DataFrame(columns=cols)
    return s.rename(columns={"method": "landmarks", "variant": "rule", "value": "ns_per_landmark"})[cols].reset_index(drop=True)


def kernel_agreement(bench: pd.DataFrame) -> pd.DataFrame:
    """The end-to-end check of the Triton decode path against the torch reference (check_kernels_e2e.py, table
    'agreement'): per prompt (seed, prompt_tokens) and method, whether greedy tokens are identical, where they first
    diverge and the reference's own top-2 logit margin there (0: a tie that rounding decides)."""
    cols = ["seed", "prompt_tokens", "method", "identical", "first_divergence", "n_tokens", "reference_margin",
            "max_logit_diff", "median_logit_diff", "kernels_s", "reference_s"]
    k = bench_table(bench, "agreement", "check_kernels_e2e")
    if k.empty:
        return pd.DataFrame(columns=cols)
    k = k.assign(seed=k["variant"].str.removeprefix("seed=").astype(int), prompt_tokens=k["context"],
                 identical=k["identical"].astype(bool))
    return k[[c for c in cols if c in k]].reset_index(drop=True)
