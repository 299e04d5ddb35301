"""Do the Text2JSON loops follow a gold-free tail? Score and loop rate by where the last gold passage sits.

    python benchmarks/text2json_tail.py RESULTS [RESULTS ...] --settings c1_cal_plain,d1_c1_s0.25 \
        --json benchmarks/results/text2json_tail_h200.json

RESULTS: results stores (folders) or parquet files holding the H200 search's rows (sample ids
t{tokens}_{setting}_s{seed}_{i}, gpu_text2json.py). The samples are regenerated here from their setting and seed with
the model's tokenizer (deterministic), which gives each one's gold_positions (the gold passages' places in the text,
0 = first passage, 1 = last). Prints, per setting and length: samples, mean score and loop rate (outputs that repeat
or cycle to the token cap, tasks.text2json_score.ending), split by whether the last gold passage lies in the text's
final 1/n_gold ("late") or earlier.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_text2json import SAMPLE_ID, SETTINGS, samples_for  # noqa: E402

from shadowkv_lab.results import load  # noqa: E402
from shadowkv_lab.tasks.text2json_score import LOOPS, ending  # noqa: E402

def parse_ids(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows whose sample_id names a search setting, with tokens / setting / seed / index columns added."""
    rows = rows.reset_index(drop=True)
    parts = rows["sample_id"].str.extract(SAMPLE_ID)
    out = rows[parts["setting"].isin(list(SETTINGS))].copy()
    parts = parts.loc[out.index]
    for col in ("tokens", "seed", "index"):
        out[col] = parts[col].astype(int)
    out["setting"] = parts["setting"]
    return out


def tail_table(rows: pd.DataFrame, gold_positions: dict[str, list[float]]) -> pd.DataFrame:
    """One row per (setting, tokens, where): n, score, loop rate. where: "all", "late" (last gold passage in the final
    1/n_gold of the text) or "early". rows: parse_ids output with prediction and score; gold_positions: by sample_id."""
    d = rows.copy()
    d["looped"] = d["prediction"].map(ending).isin(LOOPS)
    d["late"] = d["sample_id"].map(lambda i: max(gold_positions[i]) >= 1 - 1 / len(gold_positions[i]))
    out = []
    for (setting, tokens), g in d.groupby(["setting", "tokens"]):
        for where, part in (("all", g), ("late", g[g["late"]]), ("early", g[~g["late"]])):
            out.append(dict(setting=setting, tokens=int(tokens), where=where, n=int(len(part)),
                            score=round(float(part["score"].mean()), 2) if len(part) else None,
                            loop_rate=round(float(part["looped"].mean()), 3) if len(part) else None))
    return pd.DataFrame(out)


def regenerate_positions(rows: pd.DataFrame, tokenizer) -> dict[str, list[float]]:
    """gold_positions of every sample in rows, regenerated from its setting and seed."""
    positions = {}
    for (tokens, setting, seed), g in rows.groupby(["tokens", "setting", "seed"]):
        _, samples = samples_for(tokenizer, int(tokens), 0, int(g["index"].max()) + 1, int(seed), setting)
        positions.update({s.id: s.meta["gold_positions"] for s in samples})
    return positions


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", nargs="+", help="results stores or parquet files")
    ap.add_argument("--model", default="qwen2.5-coder-1.5b", help="the model whose tokenizer sized the prompts")
    ap.add_argument("--settings", default=None, help="comma-separated SETTINGS names (default: every one found)")
    ap.add_argument("--json", default=None, help="also write the table here")
    args = ap.parse_args(argv)
    wanted = args.settings.split(",") if args.settings else None
    if wanted and (unknown := [s for s in wanted if s not in SETTINGS]):
        raise SystemExit(f"--settings: unknown {unknown}; allowed: {', '.join(SETTINGS)}")
    frames = [pd.read_parquet(p) if str(p).endswith(".parquet") else load(p) for p in args.results]
    rows = parse_ids(pd.concat(frames).drop_duplicates("sample_id"))
    rows = rows[rows["method"] == "full"] if "method" in rows else rows
    if wanted:
        rows = rows[rows["setting"].isin(wanted)]
    if rows.empty:
        raise SystemExit(f"no rows of the search settings {wanted or '(any)'} in {args.results}")
    from shadowkv_lab.models import load_tokenizer

    table = tail_table(rows, regenerate_positions(rows, load_tokenizer(args.model)))
    print(table.to_string(index=False))
    if args.json:
        Path(args.json).write_text(json.dumps({"what": __doc__.split("\n")[0], "model": args.model,
                                               "results": [str(p) for p in args.results],
                                               "rows": table.to_dict(orient="records")}, indent=1))


if __name__ == "__main__":
    main()
