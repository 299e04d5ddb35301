"""notebook_grid: a notebook's grid planned (dry) and run without Jupyter, and a profile's GPU time added up."""

import pandas as pd
import pytest

from shadowkv_lab import notebook_grid, workbook

NB = "notebooks/04_chunk_size.ipynb"


def _params(tmp_path):
    return {"model": "tiny-qwen2", "profile": "quick", "results_dir": str(tmp_path / "store"),
            "figures_dir": str(tmp_path / "fig"), "n": 1, "tokens": 1200, "max_new_tokens": 3,
            "chunk_sizes": [1, 4]}


def test_dry_plan_then_run_fills_the_store(tmp_path):
    plan = notebook_grid.run_grid(NB, _params(tmp_path), "dry")
    assert list(plan.task) == ["text2json"] and int(plan.to_run.sum()) == 3  # full + two chunk sizes, one sample
    assert len(plan.pending[0].split(",")) == 3 and not list((tmp_path / "store").glob("*.parquet"))
    rows = notebook_grid.run_grid(NB, _params(tmp_path), "run")
    assert len(rows) == 3 and set(rows.finish_reason) <= {"stop", "length"}
    again = notebook_grid.run_grid(NB, _params(tmp_path), "dry")
    assert int(again.to_run.sum()) == 0 and int(again.done.sum()) == 3
    assert workbook.GRID_ENV not in __import__("os").environ  # the mode does not leak out of the call


def test_profile_total_counts_shared_cells_once():
    a = pd.DataFrame({"task": ["t", "t"], "sample_id": ["s0", "s1"], "prompt_tokens": [100, 200], "cap": [10, 10],
                      "pending": ["h1,h2", "h1"]})
    b = pd.DataFrame({"task": ["t"], "sample_id": ["s0"], "prompt_tokens": [100], "cap": [10], "pending": ["h2,h3"]})
    t = notebook_grid.profile_total([a, b], {"prefill_tok_s": 100.0, "decode_tok_s": 10.0})
    assert (t["cells"], t["prefill_tokens"], t["decode_tokens_max"]) == (4, 300, 40)
    assert t["gpu_minutes"] == pytest.approx((3 + 4) / 60) == t["gpu_minutes_expected"]  # no answer lengths: caps
    a["answer_tokens"], b["answer_tokens"] = [5, 2], [5]  # measured mean answers per row
    t = notebook_grid.profile_total([a, b], {"prefill_tok_s": 100.0, "decode_tok_s": 10.0})
    assert t["decode_tokens_expected"] == 5 + 5 + 2 + 5 and t["gpu_minutes_expected"] == pytest.approx((3 + 1.7) / 60)


def test_measured_answer_tokens_per_task(tmp_path):
    from shadowkv_lab.runner import measured_answer_tokens

    pd.DataFrame({"task": ["text2json@16k", "text2json@8k", "multineedle@16k"], "new_tokens": [300, 100, 50]}).to_parquet(
        tmp_path / "cells.parquet")
    assert measured_answer_tokens(str(tmp_path / "cells.parquet")) == {"text2json": 200.0, "multineedle": 50.0}
    assert measured_answer_tokens(str(tmp_path / "none.parquet")) == {}
    assert measured_answer_tokens()["text2json"] > 0  # the committed reproduction's rows


def test_bad_mode_and_missing_grid(tmp_path):
    with pytest.raises(ValueError, match="mode"):
        notebook_grid.run_grid(NB, {}, "fast")
    with pytest.raises(ValueError, match="never called wb.run"):
        notebook_grid.run_grid("notebooks/08_decode_speed.ipynb", {"profile": "quick"}, "dry")


def test_all_cells_draw_the_figures_and_stored_only_runs_none(tmp_path, monkeypatch):
    """--all runs the grid and the figure cells (no Jupyter); --all --stored-only then draws from the store alone,
    and on an empty store names what is missing."""
    import shadowkv_lab.runner as runner

    params = _params(tmp_path)
    ns = notebook_grid.run_grid(NB, params, "all")
    figs = sorted(p.name for p in (tmp_path / "fig").glob("*.pdf"))
    assert figs and all((tmp_path / "fig" / f).with_suffix(".png").is_file() for f in figs) and len(ns["df"]) == 3
    for p in (tmp_path / "fig").iterdir():
        p.unlink()
    monkeypatch.setattr(runner, "prefill", lambda *a, **k: pytest.fail("stored mode must not run a cell"))
    notebook_grid.run_grid(NB, params, "stored")
    assert sorted(p.name for p in (tmp_path / "fig").glob("*.pdf")) == figs
    with pytest.raises(runner.MissingCells, match="3 cell"):
        notebook_grid.run_grid(NB, {**params, "results_dir": str(tmp_path / "empty")}, "stored")
    assert workbook.GRID_ENV not in __import__("os").environ
    with pytest.raises(SystemExit):
        notebook_grid.main([NB, "p.yaml", "--stored-only"])


def test_md_prints_where_ipython_is_missing(monkeypatch, capsys):
    """notebook_grid --all runs a whole notebook as a script, also on a GPU host without IPython: wb.md prints."""
    import sys

    from shadowkv_lab import workbook

    monkeypatch.setitem(sys.modules, "IPython.display", None)  # import raises ImportError
    workbook.md("**ShadowKV** loses 20 points")
    assert capsys.readouterr().out == "**ShadowKV** loses 20 points\n"
