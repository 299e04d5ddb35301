"""The same cell run twice: do two result sets agree token for token?

A cell's tokens must not depend on the decode path, its batch mates, the wave size or the commit that ran it when the
decode numerics did not change. `cell_agreement` joins two sets of rows on the cell key and says, per cell, whether
the generated token ids are identical, where they first part, and how the scores compare.
"""

from __future__ import annotations

import json

import pandas as pd

from ..results import KEY

AGREEMENT_COLUMNS = (*KEY, "method", "identical", "first_divergence", "new_tokens_a", "new_tokens_b", "score_a",
                     "score_b", "commit_a", "commit_b")


def first_divergence(a: list[int], b: list[int]) -> int:
    """Index of the first differing token; the shorter length when one is a prefix of the other; -1 when equal."""
    if a == b:
        return -1
    n = min(len(a), len(b))
    return next((i for i in range(n) if a[i] != b[i]), n)


def cell_agreement(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """One row per cell that both `a` and `b` hold (results.load frames), AGREEMENT_COLUMNS: identical token ids,
    the first differing position (-1: none), both lengths, scores and commits. Cells held by one side only are left
    out; an empty frame when none are shared."""
    for name, df in (("a", a), ("b", b)):
        missing = [c for c in (*KEY, "method", "token_ids", "score") if c not in df.columns]
        if missing:
            raise ValueError(f"rows {name} lack column(s) {missing}: not results rows (shadowkv_lab.results.load)")
    cols = [*KEY, "method", "token_ids", "score", "git_commit"]
    both = a.reindex(columns=cols).merge(b.reindex(columns=cols).drop(columns="method"), on=list(KEY),
                                         suffixes=("_a", "_b"))
    out = []
    for r in both.itertuples(index=False):
        ta, tb = json.loads(r.token_ids_a), json.loads(r.token_ids_b)
        d = first_divergence(ta, tb)
        out.append({**{k: getattr(r, k) for k in KEY}, "method": r.method, "identical": d < 0, "first_divergence": d,
                    "new_tokens_a": len(ta), "new_tokens_b": len(tb), "score_a": r.score_a, "score_b": r.score_b,
                    "commit_a": r.git_commit_a, "commit_b": r.git_commit_b})
    return pd.DataFrame(out, columns=list(AGREEMENT_COLUMNS))


def agreement_summary(cells: pd.DataFrame) -> pd.DataFrame:
    """Per task and method: cells compared, identical, and the mean score on each side."""
    return (cells.groupby(["task", "method"], sort=False)
            .agg(cells=("identical", "size"), identical=("identical", "sum"), score_a=("score_a", "mean"),
                 score_b=("score_b", "mean"))
            .reset_index())
