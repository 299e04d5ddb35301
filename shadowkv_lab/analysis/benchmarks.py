"""Rows of the GPU benchmarks' JSON files (benchmarks/results/*.json) and the tables the speed figures read."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

def _scalars(d: dict, prefix: str = "") -> dict:
    """Scalar fields of a JSON object; nested objects flattened as 'key.sub' (lists dropped)."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_scalars(v, f"{prefix}{k}."))
        elif not isinstance(v, list):
            out[f"{prefix}{k}"] = v
    return out

def load_benchmarks(path="benchmarks/results") -> pd.DataFrame:
    """Rows of every *.json under `path` written by the benchmarks (benchmarks/README.md); empty when absent.

    A file that is a list of objects gives one table named after the file; a file that is an object gives one
    table per list-of-objects field (decode_step.json: 'steps', 'scoring', 'hits', 'zero_copy'; cache_step_*.json:
    'rows') with the object's scalar fields (device, meta.model, ...) copied onto each row. Columns `source`
    (file name) and `table` say where a row came from. Unreadable files are skipped.
    """
    path = Path(path)
    files = sorted(path.glob("*.json")) if path.is_dir() else ([path] if path.is_file() else [])
    rows = []
    for f in files:
        try:
            data = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, list):
            header, tables = {}, {f.stem: data}
        elif isinstance(data, dict):
            header = _scalars(data)
            tables = {k: v for k, v in data.items() if isinstance(v, list) and v and all(isinstance(i, dict) for i in v)}
            tables = tables or {f.stem: [data]}
        else:
            continue
        for name, items in tables.items():
            rows.extend({"source": f.name, "table": name, **header, **_scalars(it)} for it in items if isinstance(it, dict))
    return pd.DataFrame(rows)

def scoring_rows(bench: pd.DataFrame) -> pd.DataFrame:
    """The landmark-scoring rows (landmarks, rule, ns_per_landmark) of the newest benchmark file that has them (by
    its `date` field, else the file name order of load_benchmarks); empty when there are none."""
    need = {"table", "landmarks", "rule", "ns_per_landmark"}
    if bench is None or bench.empty or not need <= set(bench.columns):
        return pd.DataFrame(columns=sorted(need))
    s = bench[(bench["table"] == "scoring") & bench["ns_per_landmark"].notna() & (bench["landmarks"] != "-")]
    if s.empty:
        return s
    order = s.groupby("source")["date"].max().fillna("").sort_values() if "date" in s else None
    newest = order.index[-1] if order is not None else s["source"].iloc[-1]
    return s[s["source"] == newest]

def kernel_agreement(bench: pd.DataFrame) -> pd.DataFrame:
    """The end-to-end check of the Triton decode path against the torch reference (check_kernels_e2e.py,
    kernels_e2e.json): per prompt and method, whether greedy tokens are identical, where they first diverge and the
    reference's own top-2 logit margin there (0: a tie that rounding decides)."""
    cols = ["seed", "prompt_tokens", "method", "identical", "first_divergence", "n_tokens",
            "reference_margin_at_divergence", "max_logit_diff_before", "median_logit_diff_before", "kernels_s", "reference_s"]
    if bench is None or bench.empty or "identical" not in bench:
        return pd.DataFrame(columns=cols)
    k = bench[bench["identical"].notna()]
    return k[[c for c in cols if c in k]].reset_index(drop=True)
