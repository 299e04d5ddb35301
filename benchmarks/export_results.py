"""A results store as the compact, committed form: tidy cells (one per sample x method x task), a summary table per
task, and the provenance of every row.

    python benchmarks/export_results.py STORE [STORE...] --out results/reproduction --command "python benchmarks/reproduce.py ..."

Writes OUT/cells.parquet (ROW_COLUMNS without the generated token ids; predictions kept, zstd-compressed; `task` names the
prompt length, 'text2json@16k', analysis.tasks_by_length),
OUT/summary.csv and OUT/summary.md (analysis.write_summary: mean, 95% CI, n, paired delta against full, GPU and
offloaded bytes per token per layer), and OUT/PROVENANCE.md (the commits, devices and dtypes the rows were produced
with, the command given, the cells per task and method). Stores are merged with analysis.load_stores (a cell in
several stores is counted once). Fails if the stores hold no rows, or if OUT/cells.parquet would exceed --max-mb.
--compact-records first rewrites each store's older attention records (float64) compacted in place
(results.compact_store_records: float32 at 1e-4, zstd), which is how a committed store stays small.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shadowkv_lab.analysis.methods import tasks_by_length  # noqa: E402
from shadowkv_lab.analysis.report import load_stores, to_markdown, write_summary  # noqa: E402

DROP = ("token_ids",)  # the generated ids: exact comparisons only, 4x the predictions' size


def uniform_columns(df):
    """Object columns whose values mix Python types (a task's `meta_seed` is an int, another's a "seed:index" string)
    as strings, missing values kept: a Parquet column has one type."""
    df = df.copy()
    for c in df.columns[df.dtypes == object]:
        kinds = {type(v) for v in df[c] if v is not None and not (isinstance(v, float) and v != v)}
        if len(kinds) > 1:
            df[c] = df[c].map(lambda v: v if v is None or (isinstance(v, float) and v != v) else str(v))
    return df


def export(stores: list[str], out: Path, command: str, max_mb: float = 8.0) -> dict:
    df = tasks_by_length(load_stores(stores))  # Text2JSON at 8k and 16k are two tasks, not one pooled
    if df.empty:
        raise SystemExit(f"no result rows in {stores}")
    out.mkdir(parents=True, exist_ok=True)
    cells = uniform_columns(df.drop(columns=[c for c in DROP if c in df.columns]))
    path = out / "cells.parquet"
    cells.to_parquet(path, index=False, compression="zstd")
    mb = path.stat().st_size / 1e6
    if mb > max_mb:
        path.unlink()
        raise SystemExit(f"{path}: {mb:.1f} MB > --max-mb {max_mb}; drop predictions or split the export")
    write_summary(df, out)
    counts = df.groupby(["task", "method"]).size().unstack(fill_value=0)
    prov = df.groupby(["git_commit", "device_name", "dtype"], dropna=False).size().rename("rows").reset_index()
    text = [f"# Provenance of {path.name}\n", f"Command: `{command}`\n" if command else "",
            f"{len(df)} cells, {df['task'].nunique()} tasks, {df['method'].nunique()} methods; {mb:.2f} MB.\n",
            "## Rows by commit, device and dtype\n", to_markdown(prov),
            "\n## Cells per task and method\n", to_markdown(counts, index=True)]
    (out / "PROVENANCE.md").write_text("\n".join(text))
    return {"rows": len(df), "mb": mb, "out": str(out)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stores", nargs="+", help="results store folders (shadowkv_lab.results)")
    ap.add_argument("--out", required=True, help="output folder, e.g. results/reproduction")
    ap.add_argument("--command", default="", help="the command that filled the stores (recorded in PROVENANCE.md)")
    ap.add_argument("--max-mb", type=float, default=8.0, help="upper bound on cells.parquet (default 8 MB)")
    ap.add_argument("--compact-records", action="store_true", help="first compact each store's attention records")
    a = ap.parse_args(argv)
    if a.compact_records:
        from shadowkv_lab.results import compact_store_records

        for store in a.stores:
            before, after = compact_store_records(store)
            print(f"{store}: attention records {before / 1e6:.1f} MB -> {after / 1e6:.1f} MB")
    r = export(a.stores, Path(a.out), a.command, a.max_mb)
    print(f"wrote {r['rows']} cells ({r['mb']:.2f} MB) and the summary to {r['out']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
