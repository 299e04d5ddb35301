"""How many tokens a time-limited call stores, against its wave size: a model of a refilled decode call.

    python benchmarks/wave_model.py results/reproduction/cells.parquet --task longproc_html_to_tsv

A call decodes up to B rows a step; a step costs FIXED + PER_ROW x live rows (ms); a row stops at its answer's
length, drawn from the stored cells of --task; once half of the rows have stopped, queued rows take their places
(refill); at --limit seconds the call ends and the rows still decoding are lost (a part resumes without them).
Prints the tokens stored per call for each B, the mean over --trials draws. The defaults fit LongProc's 64-row call
on an H100 (about 135 ms a step; 142,030 tokens stored in 490 s, against about 166,000 modelled for 510 s).
A model, not a measurement: it says which wave sizes are worth measuring.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import pandas as pd


def stored_tokens(lengths: np.ndarray, rows: int, limit_s: float, fixed_ms: float, per_row_ms: float,
                  rng: np.random.Generator) -> int:
    """Tokens of the rows that finish within limit_s in one refilled call of up to `rows` rows."""
    left = rng.choice(lengths, rows).astype(float)  # tokens each live row still has to decode (queued rows: drawn)
    total = left.copy()
    t, stored = 0.0, 0
    while len(left):
        step_s = (fixed_ms + per_row_ms * len(left)) / 1000
        n = left.min()
        if t + n * step_s > limit_s:
            break
        t += n * step_s
        left -= n
        done = left <= 0
        stored += int(total[done].sum())
        left, total = left[~done], total[~done]
        if len(left) * 2 <= rows:  # refill
            new = rng.choice(lengths, rows - len(left)).astype(float)
            left, total = np.concatenate([left, new]), np.concatenate([total, new])
    return stored


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cells", help="a results export (cells.parquet) whose rows give the answer lengths")
    ap.add_argument("--task", required=True)
    ap.add_argument("--limit", type=float, default=510.0, help="seconds of decoding a call has")
    ap.add_argument("--fixed-ms", type=float, default=90.0, help="a step's cost that does not grow with its rows")
    ap.add_argument("--per-row-ms", type=float, default=0.7, help="a step's cost per live row")
    ap.add_argument("--rows", default="64,96,128,192,256", help="wave sizes to model, comma-separated")
    ap.add_argument("--trials", type=int, default=30)
    a = ap.parse_args(argv)
    for name in ("limit", "fixed_ms", "trials"):
        if getattr(a, name) <= 0:
            ap.error(f"--{name.replace('_', '-')} {getattr(a, name)}: must be > 0")
    if a.per_row_ms < 0:
        ap.error(f"--per-row-ms {a.per_row_ms}: must be >= 0")
    try:
        sizes = [int(x) for x in a.rows.split(",")]
    except ValueError:
        ap.error(f"--rows {a.rows!r}: expected comma-separated integers, e.g. 64,128,192")
    if min(sizes) < 1:
        ap.error(f"--rows {a.rows!r}: every wave size must be >= 1")
    d = pd.read_parquet(a.cells, columns=["task", "new_tokens"])
    lengths = d.loc[d["task"] == a.task, "new_tokens"].to_numpy()
    if len(lengths) == 0:
        ap.error(f"--task {a.task!r}: no cells of it in {a.cells}; tasks there: {sorted(d['task'].unique())}")
    print(f"{a.task}: {len(lengths)} answer lengths (mean {lengths.mean():.0f}, max {lengths.max()}); a step "
          f"{a.fixed_ms:g} ms + {a.per_row_ms:g} ms a row; {a.limit:g} s a call, refill at half")
    rng = np.random.default_rng(0)
    for rows in sizes:
        got = [stored_tokens(lengths, rows, a.limit, a.fixed_ms, a.per_row_ms, rng) for _ in range(a.trials)]
        step_ms = a.fixed_ms + a.per_row_ms * rows
        print(f"  {rows:4d} rows: {np.mean(got):9,.0f} tokens stored a call ({np.mean(got) / a.limit:5.0f} tok/s); "
              f"a full wave's step {step_ms:.0f} ms, a 2,048-token answer {2048 * step_ms / 1000:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
