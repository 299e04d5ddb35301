"""A workbook notebook without Jupyter: its code cells run as a script, up to its `wb.run` call (the grid) or all of
them (the grid and its figures).

    python -m shadowkv_lab.notebook_grid notebooks/03_landmark_precision.ipynb PARAMS.yaml --dry-run   # plan + GPU time
    python -m shadowkv_lab.notebook_grid notebooks/03_landmark_precision.ipynb PARAMS.yaml              # run the grid
    python -m shadowkv_lab.notebook_grid notebooks/03_landmark_precision.ipynb PARAMS.yaml --all        # + its figures
    python -m shadowkv_lab.notebook_grid ... --all --stored-only    # figures from stored cells, none run

Why: the grid (tasks, samples, methods) is defined once, in the notebook. A GPU machine without Jupyter runs exactly
that grid into the shared results store; the notebook then finds every cell stored and only draws its figures.
`run_all.sh --dry-run` uses the dry mode to add up the estimated GPU time of a whole profile.

The cells run in one namespace, the PARAMS (papermill's YAML) assigned after the cell tagged `parameters`, as
papermill injects them. The grid modes stop when `wb.run` returns (workbook.GridStop), before the figure cells; with
--all the figures are saved as run_all.sh saves them (PDF + PNG, stamped), without an executed notebook. In the dry
mode `wb.load` loads the tokenizer and the model's config only (weights on the meta device): nothing is computed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

# dry / run: the cells up to the grid (planned / run), then stop. all: every cell, the grid's missing cells run and
# the figures saved (a GPU machine without Jupyter draws the notebook's figures). stored: every cell, none run
# (runner.MissingCells names any missing).
MODES = ("dry", "run", "all", "stored")
_ENV = {"dry": "dry", "run": "run", "all": None, "stored": "stored"}  # the workbook's grid mode of each


def code_cells(path) -> list[tuple[list[str], str]]:
    """(tags, source) of every code cell of a notebook."""
    nb = json.loads(Path(path).read_text())
    return [(c.get("metadata", {}).get("tags", []), "".join(c["source"])) for c in nb["cells"] if c["cell_type"] == "code"]


def run_grid(path, params: dict, mode: str = "run"):
    """Run notebook `path` with `params`. dry / run: up to its grid; returns what wb.run returned (dry: the plan, one
    row per sample; run: the grid's rows); raises if the notebook has no wb.run call. all / stored: every cell
    (figures saved where the parameters say); returns the notebook's namespace."""
    from . import workbook

    if mode not in MODES:
        raise ValueError(f"mode={mode!r}: allowed {MODES}")
    cells = code_cells(path)
    if not any("parameters" in tags for tags, _ in cells):
        raise ValueError(f"{path}: no cell tagged 'parameters'")
    if mode in ("all", "stored"):
        os.environ.setdefault("MPLBACKEND", "Agg")  # figures to files, no display needed
    ns: dict = {"__name__": "__notebook__"}
    prev = os.environ.get(workbook.GRID_ENV)
    if _ENV[mode] is None:
        os.environ.pop(workbook.GRID_ENV, None)
    else:
        os.environ[workbook.GRID_ENV] = _ENV[mode]
    try:
        for tags, src in cells:
            try:
                exec(compile(src, f"{path}:cell", "exec"), ns)  # noqa: S102 - our own notebooks
            except workbook.GridStop as stop:
                return stop.result
            if "parameters" in tags:
                ns.update(params)
    finally:
        if prev is None:
            os.environ.pop(workbook.GRID_ENV, None)
        else:
            os.environ[workbook.GRID_ENV] = prev
    if mode in ("all", "stored"):
        return ns
    raise ValueError(f"{path}: the notebook never called wb.run")


def profile_total(plans, rates: dict, recorded: dict | None = None) -> dict:
    """Estimated GPU time of several notebooks' plans together (CSV files or DataFrames written by the dry mode).
    A cell (task, sample, config hash, recorded or not) that several notebooks share runs once, and a sample is
    prefilled once. Recorded cells decode at `recorded`'s rate (runner.measured_recorded_rate; None: the
    unrecorded rate, an underestimate)."""
    import pandas as pd

    df = pd.concat([p if isinstance(p, pd.DataFrame) else pd.read_csv(p, keep_default_na=False) for p in plans])
    answer = df["answer_tokens"] if "answer_tokens" in df else df["cap"]
    rec = df["recorded"].astype(str).eq("True") if "recorded" in df else pd.Series(False, index=df.index)
    cells = {(t, s, h, r): (cap, a) for t, s, hs, cap, a, r in zip(df.task, df.sample_id, df.pending, df.cap, answer, rec)
             for h in str(hs).split(",") if h}
    prompts = {(t, s): L for t, s, L in zip(df.task, df.sample_id, df.prompt_tokens)}
    prefill = sum(prompts[(t, s)] for t, s in {(t, s) for t, s, _, _ in cells})
    rate = {False: rates["decode_tok_s"], True: (recorded or rates)["decode_tok_s"]}

    def minutes(which: int) -> float:  # which: 0 the cap, 1 the expected answer
        return (prefill / rates["prefill_tok_s"] + sum(v[which] / rate[k[3]] for k, v in cells.items())) / 60

    return {"cells": len(cells), "prefill_tokens": prefill, "decode_tokens_max": sum(c for c, _ in cells.values()),
            "decode_tokens_expected": round(sum(a for _, a in cells.values())), "gpu_minutes": minutes(0),
            "gpu_minutes_expected": minutes(1), "recorded_cells": sum(k[3] for k in cells)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("notebook", nargs="?")
    ap.add_argument("params", nargs="?", help="papermill parameters (YAML), e.g. run_all.sh's outputs/params/<profile>/<nb>.yaml")
    ap.add_argument("--total", nargs="+", metavar="PLAN", help="instead: the estimated GPU time of these dry-run plans together")
    ap.add_argument("--dry-run", action="store_true", help="print the plan and its estimated GPU time, run nothing")
    ap.add_argument("--plan-out", default=None, help="dry run: also write the plan (one row per sample) as CSV here")
    ap.add_argument("--all", action="store_true", help="run every cell: the grid, then the figures (no Jupyter needed)")
    ap.add_argument("--stored-only", action="store_true", help="with --all: run no grid cell, draw from stored ones")
    a = ap.parse_args(argv)
    if a.total:
        from . import workbook
        from .runner import dry_run_rates, measured_recorded_rate

        # The notebooks' grids run as each notebook's own dry run plans them (workbook.run): values where the configs
        # keep them (offloaded to host memory on a GPU), refilled unless told not to.
        rates = dry_run_rates(on_device=False, refill=workbook.refill_from_env())
        recorded = measured_recorded_rate()
        t = profile_total(a.total, rates, recorded)
        rec = (f"; its {t['recorded_cells']:,} recorded cells at {recorded['decode_tok_s']:,.1f} tok/s "
               f"({recorded['source']})" if recorded and t["recorded_cells"] else "")
        print(f"profile total: {t['cells']:,} cells, {t['prefill_tokens']:,} prefill tokens, "
              f"{t['decode_tokens_expected']:,} decode tokens expected (<= {t['decode_tokens_max']:,}): estimated "
              f"{t['gpu_minutes_expected']:,.1f} GPU minutes expected, at most {t['gpu_minutes']:,.1f} (every row to "
              f"its cap), at {rates['source']} (prefill {rates['prefill_tok_s']:,.0f} tok/s, decode "
              f"{rates['decode_tok_s']:,.0f} tok/s){rec}")
        return 0
    if not (a.notebook and a.params):
        ap.error("a notebook and its params, or --total PLAN...")
    import yaml

    if a.stored_only and not a.all:
        ap.error("--stored-only goes with --all")
    if a.all and a.dry_run:
        ap.error("--all and --dry-run exclude each other")
    params = yaml.safe_load(Path(a.params).read_text()) or {}
    mode = "dry" if a.dry_run else ("stored" if a.stored_only else "all") if a.all else "run"
    res = run_grid(a.notebook, params, mode)
    if a.dry_run and a.plan_out and res is not None:
        res.assign(notebook=Path(a.notebook).stem).to_csv(a.plan_out, index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
