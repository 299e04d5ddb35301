"""benchmarks/wave_model.py: the stored tokens of a time-limited, refilled call, restated by hand on equal rows."""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from wave_model import main, stored_tokens  # noqa: E402


def test_equal_rows_finish_in_whole_waves_and_the_cut_loses_the_last():
    rng = np.random.default_rng(0)
    lengths = np.array([10])
    # 100 ms a step, nothing per row: every wave of 4 rows takes 1 s; the third would end at 3 s, past the limit
    assert stored_tokens(lengths, 4, 2.5, 100, 0, rng) == 2 * 4 * 10
    assert stored_tokens(lengths, 4, 3.0, 100, 0, rng) == 3 * 4 * 10
    # a step's per-row cost: 4 rows at 100 + 4 x 25 ms = 0.2 s a step, 2 s a wave
    assert stored_tokens(lengths, 4, 3.9, 100, 25, rng) == 4 * 10


def test_refill_keeps_long_rows_decoding_beside_new_ones():
    """Rows of 2 and 10 tokens, 2 rows: the short one stops at step 2, its place is refilled (half stopped), and the
    long row still finishes at step 10; within 1 s at 100 ms a step the call stores 2 + 10 + the refills that end."""
    rng = np.random.default_rng(1)
    got = stored_tokens(np.array([2, 10]), 2, 1.0, 100, 0, rng)
    assert got % 2 == 0 and 0 < got <= 2 * 10


def test_cli_names_a_task_that_has_no_cells(tmp_path, capsys):
    path = tmp_path / "cells.parquet"
    pd.DataFrame({"task": ["a", "a"], "new_tokens": [5, 7]}).to_parquet(path)
    assert main([str(path), "--task", "a", "--rows", "2,4", "--trials", "2"]) == 0
    assert "2 rows" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main([str(path), "--task", "b"])
    assert "'b': no cells of it" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(path), "--task", "a", "--rows", "0"])
