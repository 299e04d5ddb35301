"""Evaluation tasks: datasets (loaded or generated offline) and their scorers.

    from shadowkv_lab.tasks import get_task
    task = get_task("text2json")
    samples = task.load(n=4, tokens=16384, seed=0, tokenizer=tok)   # generated offline
    task.score(model_output, samples[0].gold)                       # {"score": ..., "score_lenient": ...}

Registered names: text2json, multineedle, longproc_html_to_tsv, ruler_niah_single, ruler_niah_multikey,
ruler_niah_multivalue, ruler_niah_multiquery, ruler_vt, ruler_fwe. See docs/tasks.md for the data and the rules.
"""

from __future__ import annotations

from .base import Sample, Task, aggregate
from .longproc import LongProcHtmlToTsvTask
from .multineedle import MultiNeedleTask
from .ruler import RulerTask
from .text2json import Text2JSONTask

TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Text2JSONTask(),
        MultiNeedleTask(),
        LongProcHtmlToTsvTask(),
        RulerTask("ruler_niah_single"),
        RulerTask("ruler_niah_multikey"),
        RulerTask("ruler_niah_multivalue"),
        RulerTask("ruler_niah_multiquery"),
        RulerTask("ruler_vt"),
        RulerTask("ruler_fwe"),
    )
}


def get_task(name: str) -> Task:
    """The registered task called `name`; ValueError listing the known names otherwise."""
    try:
        return TASKS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}") from None


__all__ = ["Sample", "Task", "TASKS", "get_task", "aggregate"]
