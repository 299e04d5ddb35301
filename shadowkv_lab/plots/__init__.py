"""Figures: one function per figure, each takes a DataFrame (results rows, or an analysis table) and returns a
matplotlib Figure at a paper size (one column 3.25 in, one page 6.75 in; 8 pt text). `save(fig, name, outdir,
stamp)` / `FigureSaver(...).show(fig, name)` write PDF + PNG with TrueType (Type 42) fonts, stamped with profile,
model, n and commit.

Conventions: scores are 0-100; below 5 samples per cell no interval is drawn (the samples are, as dots), from 5 on
95% t intervals clipped to 0-100; memory is bytes per prompt token per layer; methods are named and coloured from
their configs (labels.py), one colour per method and per memory category in every figure; formats are named by
their bits per dimension.

Modules: style (sizes, saving, stamps), labels (names, colours), scores, sweeps, memory, attribution, attention,
text2json, speed, keys.
"""

from __future__ import annotations

from .attention import attention_profile
from .attribution import error_attribution, factorial_cells
from .labels import (CATEGORY_COLORS, MAIN_METHODS, METHOD_COLORS, config_label, format_label, format_name, is_main, method_color,
                     method_colors, method_label, method_labels, task_label)
from .keys import key_offsets
from .memory import accuracy_vs_memory, memory_breakdown
from .scores import accuracy_by_task, depth_profile
from .speed import capacity, cpu_decode_speed, decode_speed, landmark_scoring, step_phases
from .style import COLUMN, PAGE, RC, FigureSaver, Stamp, make_stamp, save
from .sweeps import budget_sweep, chunk_size, key_compression, landmark_precision, residual_landmarks, residual_saving
from .text2json import errors_by_position, text2json_errors

__all__ = [
    "CATEGORY_COLORS", "COLUMN", "MAIN_METHODS", "METHOD_COLORS", "PAGE", "RC", "FigureSaver", "Stamp", "accuracy_by_task",
    "accuracy_vs_memory", "attention_profile", "budget_sweep", "capacity", "chunk_size", "config_label", "cpu_decode_speed",
    "decode_speed", "depth_profile", "error_attribution", "errors_by_position", "factorial_cells", "format_label",
    "format_name", "is_main", "key_compression", "key_offsets", "landmark_precision", "landmark_scoring", "make_stamp", "memory_breakdown",
    "method_color", "method_colors", "method_label", "method_labels", "residual_landmarks", "residual_saving", "save", "step_phases",
    "task_label", "text2json_errors",
]
