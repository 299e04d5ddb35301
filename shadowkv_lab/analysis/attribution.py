"""The 2x2 {low-rank, exact keys} x {landmark, oracle selection} error attribution of ShadowKV's accuracy loss."""

from __future__ import annotations

import pandas as pd

from .methods import _present
from .stats import mean_ci

ATTRIBUTION_CELLS = {
    "full": "full",  # F: exact attention
    "lowrank_landmark": "shadowkv",  # S(L, M): low-rank keys, landmark selection
    "exact_landmark": "shadowkv_fullkeys",  # S(E, M): exact keys, landmark selection
    "lowrank_oracle": "shadowkv_oracle",  # S(L, O): low-rank keys, oracle selection
    "exact_oracle": "oracle",  # S(E, O): exact keys, oracle selection
}

ATTRIBUTION_PARTS = ("budget_loss", "key_loss", "landmark_loss", "interaction")

def factorial_attribution(df: pd.DataFrame, metric: str = "score", cells: dict | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split ShadowKV's accuracy loss into key compression, landmark misses, their interaction and the budget.

    A 2x2 factorial design at one sparse budget (our own design; the paper publishes no attribution method):
    keys K in {L: low-rank (rank > 0), E: exact (rank -1)} x selection S in {M: landmarks, O: oracle top-B by
    exact attention}, plus full attention F. With S(K, S) the score of a cell, measured on the same samples:

        total_loss    = F - S(L,M)                           everything ShadowKV loses
        budget_loss   = F - S(E,O)                           irreducible at this budget: even perfect keys and a
                                                             perfect choice of B tokens lose this
        key_loss      = S(E,O) - S(L,O)                      low-rank keys alone (selection already perfect)
        landmark_loss = S(E,O) - S(E,M)                      landmark misses alone (keys already exact)
        interaction   = S(L,O) + S(E,M) - S(E,O) - S(L,M)    what the two together lose beyond the sum of each
                                                             alone (> 0: they compound; < 0: they overlap)

    so total_loss = budget_loss + key_loss + landmark_loss + interaction exactly. The simple effects are measured
    from the ideal corner (E,O) because that is where each factor acts alone. The symmetric (ANOVA-style) main
    effects, averaged over the other factor, are also returned; they sum to S(E,O) - S(L,M) with no interaction:

        key_main      = ((S(E,M) - S(L,M)) + (S(E,O) - S(L,O))) / 2
        landmark_main = ((S(L,O) - S(L,M)) + (S(E,O) - S(E,M))) / 2

    Scores are 0-100 so losses are in score points. Only samples that have a finite score in all five cells
    are used (paired), per model x task. `cells` maps the roles of ATTRIBUTION_CELLS to other method names,
    e.g. budget-swept variants ("shadowkv@0.05", ...).

    Returns (per_sample, means): per_sample has one row per model x task x sample_id with the five cell
    scores and every loss; means has mean and 95% CI (columns <name>, <name>_ci95) per model x task, and n.
    """
    cells = {**ATTRIBUTION_CELLS, **(cells or {})}
    need = list(cells.values())
    d = df[df["method"].isin(need)].copy()
    d[metric] = pd.to_numeric(d[metric], errors="coerce")
    keys = _present(d, ("model", "task", "sample_id"))
    wide = d.pivot_table(index=keys, columns="method", values=metric, aggfunc="mean")
    missing = [m for m in need if m not in wide.columns]
    if missing:
        raise ValueError(f"factorial_attribution needs methods {need}; missing {missing} in the results")
    wide = wide[need].dropna()  # paired: every cell present and finite
    per = pd.DataFrame(index=wide.index)
    for role, meth in cells.items():
        per[role] = wide[meth]
    F, LM, EM, LO, EO = (per[r] for r in ("full", "lowrank_landmark", "exact_landmark", "lowrank_oracle", "exact_oracle"))
    per["total_loss"] = F - LM
    per["budget_loss"] = F - EO
    per["key_loss"] = EO - LO
    per["landmark_loss"] = EO - EM
    per["interaction"] = LO + EM - EO - LM
    per["key_main"] = ((EM - LM) + (EO - LO)) / 2
    per["landmark_main"] = ((LO - LM) + (EO - EM)) / 2
    per = per.reset_index()
    cols = [c for c in per.columns if c not in keys]
    rows = []
    group = [k for k in keys if k != "sample_id"]
    for key, g in per.groupby(group, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        row = {**dict(zip(group, key)), "n": len(g)}
        for c in cols:
            m, h, _ = mean_ci(g[c])
            row[c], row[f"{c}_ci95"] = m, h
        rows.append(row)
    return per, pd.DataFrame(rows)
