"""Text2JSON field-level errors: which entity / field a prediction got wrong, with the scorer's own parsing."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..tasks.text2json_score import canonical, extract_strict, parse_gold
from .methods import method_order

ENTITY_STATUSES = ("correct", "wrong_value", "missing_value", "missing_entity", "extra_entity", "unparseable")

def entity_errors(prediction: str, gold, prompt: str | None = None) -> list[dict]:
    """Field-level comparison of one Text2JSON prediction with its gold list.

    One row per gold (entity, field): status correct / wrong_value / missing_value / missing_entity, and one
    row per extra predicted entity (name not in gold, duplicate, or not an object): extra_entity. An
    unparseable prediction (the reference bracket rule) gives a single 'unparseable' row; an invalid gold
    (duplicate names) gives no rows. Matching and value comparison are the scorer's: by `name`, each gold
    entity consumed once, values through the scorer's canonical string (2001 == "2001"). With `prompt`,
    `position` is where the entity's name first occurs in the prompt (0 = start, 1 = end).
    """
    gold = parse_gold(gold)
    if not isinstance(gold, list):
        return []
    pred = extract_strict(prediction) if isinstance(prediction, str) else None
    if pred is None:
        return [{"entity": None, "field": None, "status": "unparseable", "position": np.nan}]
    low = prompt.lower() if prompt else None

    def where(name):
        if not low or not name:
            return np.nan
        i = low.find(name.lower())
        return i / max(len(low), 1) if i >= 0 else np.nan

    gold_by_name = {canonical(g.get("name")): g for g in gold if isinstance(g, dict)}
    remaining = dict(gold_by_name)
    rows, matched = [], {}
    for p in pred:
        name = canonical(p["name"]) if isinstance(p, dict) and isinstance(p.get("name"), str) else None
        if name is None or name not in remaining:
            rows.append({"entity": name, "field": None, "status": "extra_entity", "position": where(name)})
            continue
        matched[name] = p
        del remaining[name]
    for name, g in gold_by_name.items():
        p = matched.get(name)
        for f in (k for k in g if k != "name"):
            if p is None:
                st = "missing_entity"
            elif p.get(f) is None:
                st = "missing_value"
            elif canonical(p.get(f)) != canonical(g.get(f)):
                st = "wrong_value"
            else:
                st = "correct"
            rows.append({"entity": name, "field": f, "status": st, "position": where(name)})
    return rows

def text2json_field_errors(df: pd.DataFrame, gold: dict, prompts: dict | None = None, task: str = "text2json") -> pd.DataFrame:
    """Field-level error rows for every Text2JSON results row: model, task, sample_id, method + entity_errors().

    gold: sample_id -> gold list (from the task's samples, e.g. workbook.samples_by_id); prompts: sample_id ->
    prompt text (optional, for entity positions). Rows without gold are skipped.
    """
    rows = []
    d = df[df["task"] == task] if "task" in df else df
    for _, r in d.iterrows():
        g = gold.get(r["sample_id"])
        if g is None:
            continue
        for e in entity_errors(r.get("prediction", ""), g, (prompts or {}).get(r["sample_id"])):
            rows.append({"model": r.get("model"), "task": r.get("task", task), "sample_id": r["sample_id"], "method": r["method"], **e})
    return pd.DataFrame(rows, columns=["model", "task", "sample_id", "method", "entity", "field", "status", "position"])

def error_counts(errors: pd.DataFrame, by=("method",)) -> pd.DataFrame:
    """Counts and shares of each status per group (rows = group, columns = statuses)."""
    by = list(by)
    c = errors.groupby(by + ["status"], sort=False).size().unstack("status", fill_value=0)
    c = c.reindex(columns=[s for s in ENTITY_STATUSES if s in c.columns])
    if "method" in by and len(by) == 1:
        c = c.reindex(method_order(c.index))
    return c
