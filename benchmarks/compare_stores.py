"""Do two results stores agree token for token on the cells they share?

    python benchmarks/compare_stores.py STORE_A STORE_B [--out agreement.csv]

Run the same cells again (another commit, batch, wave size or path) into a fresh store, then compare it with the
store that holds them: a cell's tokens must not depend on any of these when the decode numerics did not change.
Prints, per task and method, the cells compared and how many are identical, then every cell that is not (first
differing token, scores, commits). Exit status 1 when a shared cell differs, 2 when no cell is shared.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shadowkv_lab import results  # noqa: E402
from shadowkv_lab.analysis.invariance import agreement_summary, cell_agreement  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("store_a")
    ap.add_argument("store_b")
    ap.add_argument("--out", default=None, help="write every compared cell's row (CSV)")
    a = ap.parse_args(argv)
    for s in (a.store_a, a.store_b):
        if not results.shards(s):
            raise SystemExit(f"{s}: no results shards there")
    cells = cell_agreement(results.load(a.store_a), results.load(a.store_b))
    if a.out:
        cells.to_csv(a.out, index=False)
    if cells.empty:
        print("no cell is held by both stores")
        return 2
    print(agreement_summary(cells).to_string(index=False, float_format=lambda v: f"{v:.1f}"))
    bad = cells[~cells.identical]
    print(f"{int(cells.identical.sum())} of {len(cells)} shared cells have identical tokens")
    if len(bad):
        print(bad.drop(columns=["model", "config_hash"]).to_string(index=False))
    return 1 if len(bad) else 0


if __name__ == "__main__":
    sys.exit(main())
