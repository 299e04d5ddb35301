"""The summary table run_all.sh leaves next to the figures, and reading several results stores as one.

    python -m shadowkv_lab.analysis RESULTS_DIR [MORE_DIRS] --out OUT_DIR     # writes OUT_DIR/summary.{csv,md}
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from .memory import memory_table
from .methods import _present
from .stats import MIN_N_CI, paired_delta, score_table, smoke_note, summary

def to_markdown(df: pd.DataFrame, digits: int = 2, index: bool = False) -> str:
    """A GitHub Markdown table (no tabulate dependency); floats rounded to `digits`."""
    d = df.reset_index() if index else df

    def cell(v):
        if isinstance(v, float):
            return "" if math.isnan(v) else f"{v:.{digits}f}"
        return str(v).replace("|", "\\|").replace("\n", " ")

    head = "| " + " | ".join(map(str, d.columns)) + " |"
    sep = "| " + " | ".join("---" for _ in d.columns) + " |"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in d.itertuples(index=False)]
    return "\n".join([head, sep, *body]) + "\n"

def results_summary(df: pd.DataFrame, metric: str = "score") -> pd.DataFrame:
    """One row per model x task x method: n, mean score +- CI, paired delta vs full (+- CI), GPU and offloaded
    bytes/token/layer, mean decode tokens/s and the share of generations cut by max_new_tokens."""
    s = summary(df, metric)
    if s.empty:
        return s
    if (df["method"] == "full").any():
        d = paired_delta(df, "full", metric)[["model", "task", "method", "delta", "ci95", "record"]].rename(
            columns={"delta": "delta_vs_full", "ci95": "delta_ci95", "record": "win_tie_loss_vs_full"})
        s = s.merge(d, on=["model", "task", "method"], how="left")
    mem = memory_table(df, by=("model", "task", "method"))  # per task: an absolute budget's share depends on the length
    if not mem.empty:
        keys = _present(mem, ("model", "task", "method"))
        s = s.merge(mem[_present(mem, (*keys, "device_B_per_token_layer", "offloaded_B_per_token_layer"))], on=keys, how="left")
    extra = {}
    if "decode_tok_s" in df:
        extra["decode_tok_s"] = ("decode_tok_s", "mean")
    if "finish_reason" in df:
        df = df.assign(_trunc=(df["finish_reason"] == "length").astype(float))
        extra["truncated_share"] = ("_trunc", "mean")
    if extra:
        s = s.merge(df.groupby(["model", "task", "method"]).agg(**extra).reset_index(), on=["model", "task", "method"], how="left")
    return s.drop(columns=["lo", "hi", "std", "values"])

def write_summary(df: pd.DataFrame, outdir, name: str = "summary", metric: str = "score") -> tuple[Path, Path]:
    """Write results_summary(df) as OUT/name.csv and OUT/name.md (with the method x task score table on top)."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    s = results_summary(df, metric)
    csv = outdir / f"{name}.csv"
    s.to_csv(csv, index=False)
    md = outdir / f"{name}.md"
    parts = [f"# Results summary ({len(df)} rows)\n"]
    if not s.empty:
        parts += [f"{smoke_note(s['n'])}\n", "## Score (0-100: mean ± 95% CI, or mean (per-sample values) below "
                  f"{MIN_N_CI} samples)\n", to_markdown(score_table(df, metric), index=True), "\n## Details\n", to_markdown(s)]
    md.write_text("\n".join(parts))
    return csv, md

def load_stores(paths) -> pd.DataFrame:
    """Rows of several results stores, a cell (model, task, sample_id, config_hash) kept once (first store wins)."""
    from .. import results

    frames = [f for f in (results.load(p) for p in paths) if len(f)]
    if not frames:
        return results.load(paths[0]) if paths else pd.DataFrame()
    df = pd.concat(frames, ignore_index=True)
    return df.drop_duplicates(["model", "task", "sample_id", "config_hash"], keep="first").reset_index(drop=True)

def main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m shadowkv_lab.analysis", description="Write summary.{csv,md} of results stores.")
    p.add_argument("results", nargs="+", help="results store folder(s) (shadowkv_lab.results); a cell in several is counted once")
    p.add_argument("-o", "--out", default="outputs", help="output folder (default: outputs)")
    p.add_argument("--name", default="summary")
    a = p.parse_args(argv)
    df = load_stores(a.results)
    csv, md = write_summary(df, a.out, a.name)
    print(md.read_text())
    print(f"wrote {csv} and {md}")
    return 0
