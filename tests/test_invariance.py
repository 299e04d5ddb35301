"""Token-for-token agreement of two results stores (analysis.invariance, benchmarks/compare_stores.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from shadowkv_lab.analysis.invariance import agreement_summary, cell_agreement
from shadowkv_lab.results import ResultsWriter, load

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import compare_stores  # noqa: E402


def _row(sample, method, ids, score, commit="c0"):
    return {"model": "m", "task": "t", "sample_id": sample, "method": method, "config_hash": f"h-{method}",
            "token_ids": json.dumps(ids), "score": score, "git_commit": commit}


def test_identical_diverging_prefix_and_unshared_cells(tmp_path):
    ResultsWriter(tmp_path / "a").write([_row("s0", "full", [1, 2, 3], 50.0), _row("s1", "full", [1, 2, 3], 50.0),
                                         _row("s2", "full", [1, 2], 50.0), _row("s3", "full", [9], 0.0)])
    ResultsWriter(tmp_path / "b").write([_row("s0", "full", [1, 2, 3], 50.0, "c1"), _row("s1", "full", [1, 7, 3], 25.0),
                                         _row("s2", "full", [1, 2, 4], 40.0), _row("s4", "full", [9], 0.0)])
    cells = cell_agreement(load(tmp_path / "a"), load(tmp_path / "b")).set_index("sample_id")
    assert list(cells.index) == ["s0", "s1", "s2"]  # s3 and s4 are held by one store only
    assert cells.identical.tolist() == [True, False, False]
    assert cells.first_divergence.tolist() == [-1, 1, 2]  # s2: a is a prefix of b
    assert cells.loc["s0", ["commit_a", "commit_b"]].tolist() == ["c0", "c1"]
    s = agreement_summary(cells.reset_index()).iloc[0]
    assert (s.cells, s.identical, s.score_a, s.score_b) == (3, 1, 50.0, 115 / 3)


def test_same_sample_other_config_is_not_compared(tmp_path):
    ResultsWriter(tmp_path / "a").write([_row("s0", "full", [1], 1.0)])
    ResultsWriter(tmp_path / "b").write([_row("s0", "shadowkv", [1], 1.0)])
    assert cell_agreement(load(tmp_path / "a"), load(tmp_path / "b")).empty


def test_cli_exit_status_and_csv(tmp_path, capsys):
    ResultsWriter(tmp_path / "a").write([_row("s0", "full", [1, 2], 1.0)])
    ResultsWriter(tmp_path / "b").write([_row("s0", "full", [1, 2], 1.0)])
    ResultsWriter(tmp_path / "c").write([_row("s0", "full", [1, 3], 0.0)])
    assert compare_stores.main([str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "x.csv")]) == 0
    assert "1 of 1 shared cells have identical tokens" in capsys.readouterr().out
    assert (tmp_path / "x.csv").read_text().count("\n") == 2
    assert compare_stores.main([str(tmp_path / "a"), str(tmp_path / "c")]) == 1
    with pytest.raises(SystemExit, match="no results shards"):
        compare_stores.main([str(tmp_path / "a"), str(tmp_path / "empty")])


def test_rows_without_token_ids_are_refused():
    import pandas as pd

    with pytest.raises(ValueError, match="token_ids"):
        cell_agreement(pd.DataFrame({"model": [], "task": []}), pd.DataFrame())
