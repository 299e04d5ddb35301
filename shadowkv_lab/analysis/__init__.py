"""Analysis of result rows: pure functions of DataFrames written by the runner (no model code here).

One results row = one model x task x sample x method (see shadowkv_lab.results). Attention records = one row per
(sample, method, decode step, layer, KV head) written by cache.record.AttentionRecorder. The modules, one job each:

- stats: means, small-n honest intervals (none below MIN_N_CI), per-sample values, win/tie/loss against full;
- methods: task groups, the presets' method order, config-derived columns;
- sweeps: scores along one config axis, MultiNeedle per-depth scores;
- attribution: the 2x2 {low-rank, exact keys} x {landmark, oracle selection} error attribution;
- attention: recall / attention mass / output errors by layer, prompt position and generated step;
- memory: bytes per token per layer, by category, against accuracy, and the closed form beside the measurement;
- text2json: which JSON entity / field a Text2JSON prediction got wrong;
- invariance: whether two runs of the same cells agree token for token;
- benchmarks: the GPU benchmarks' JSON rows;
- paper: the paper's reported numbers, to set beside ours;
- report: the summary table run_all.sh writes, several stores read as one.

    python -m shadowkv_lab.analysis RESULTS_DIR [MORE_DIRS] --out OUT_DIR     # writes OUT_DIR/summary.{csv,md}
"""

from __future__ import annotations

from .attention import ATTN_METRICS, _bucket, attention_by, attention_summary, attention_vs_score
from .invariance import AGREEMENT_COLUMNS, agreement_summary, cell_agreement, first_divergence
from .attribution import ATTRIBUTION_CELLS, ATTRIBUTION_PARTS, factorial_attribution
from .benchmarks import bench_table, kernel_agreement, load_benchmarks, newest_run, scoring_rows
from .memory import accuracy_vs_memory, closed_form_vs_measured, landmark_bytes, memory_breakdown, memory_table, pareto_front
from .methods import EASY_TASK_PREFIXES, KEYS, config_field, method_order, task_group, tasks_by_length
from .paper import PAPER, paper_landmark_bits, paper_memory
from .report import load_stores, main, results_summary, to_markdown, write_summary
from .stats import (METRIC_RANGE, MIN_N_CI, fmt_ci, is_smoke, mean_ci, paired_delta, per_sample, score_table, smoke_note,
                    summary, t95, win_tie_loss)
from .sweeps import depth_scores, sweep
from .text2json import ENTITY_STATUSES, entity_errors, error_counts, text2json_field_errors

__all__ = [
    "AGREEMENT_COLUMNS", "agreement_summary", "cell_agreement", "first_divergence",
    "ATTN_METRICS", "ATTRIBUTION_CELLS", "ATTRIBUTION_PARTS", "EASY_TASK_PREFIXES", "ENTITY_STATUSES", "KEYS", "METRIC_RANGE",
    "MIN_N_CI", "PAPER", "accuracy_vs_memory", "attention_by", "attention_summary", "attention_vs_score", "bench_table", "closed_form_vs_measured",
    "config_field", "depth_scores", "entity_errors", "error_counts", "factorial_attribution", "fmt_ci", "is_smoke",
    "kernel_agreement", "landmark_bytes", "load_benchmarks", "load_stores", "main", "mean_ci", "memory_breakdown", "memory_table",
    "method_order", "newest_run", "paired_delta", "paper_landmark_bits", "paper_memory", "pareto_front", "per_sample", "results_summary",
    "score_table", "scoring_rows", "smoke_note", "summary", "sweep", "t95", "task_group", "tasks_by_length", "text2json_field_errors",
    "to_markdown", "win_tie_loss", "write_summary",
]
