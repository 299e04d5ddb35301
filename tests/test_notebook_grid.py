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


def test_profile_total_counts_recorded_cells_apart_at_their_rate(tmp_path):
    """A recorded cell is not the unrecorded cell of the same config (recording is part of the key) and decodes at
    the recorded rate; without one it falls back to the unrecorded rate (runner prints that it underestimates)."""
    a = pd.DataFrame({"task": ["t"], "sample_id": ["s0"], "prompt_tokens": [100], "cap": [10], "pending": ["h1"],
                      "recorded": [False]})
    b = a.assign(recorded=[True])
    rates = {"prefill_tok_s": 100.0, "decode_tok_s": 10.0}
    t = notebook_grid.profile_total([a, b], rates, {"decode_tok_s": 2.0})
    assert (t["cells"], t["recorded_cells"], t["prefill_tokens"]) == (2, 1, 100)
    assert t["gpu_minutes"] == pytest.approx((1 + 10 / 10 + 10 / 2) / 60)
    assert notebook_grid.profile_total([a, b], rates)["gpu_minutes"] == pytest.approx((1 + 1 + 1) / 60)
    b.to_csv(tmp_path / "plan.csv", index=False)  # the dry mode's --plan-out, read back
    assert notebook_grid.profile_total([tmp_path / "plan.csv"], rates, {"decode_tok_s": 2.0})["recorded_cells"] == 1


def test_profile_total_estimates_the_notebooks_as_they_run_offloaded(tmp_path, monkeypatch, capsys):
    """The notebooks' grids keep values where their configs do (offloaded on a GPU): the total takes the rates of
    offloaded grids, the reproduction's own rows where enough carry their decode share, else the offloaded runner
    benchmark, whether or not refill is on; a bad SHADOWKV_LAB_REFILL is named."""
    from shadowkv_lab import runner

    plan = tmp_path / "plan.csv"
    pd.DataFrame({"task": ["t"], "sample_id": ["s0"], "prompt_tokens": [100], "cap": [10], "pending": ["h1"]}).to_csv(
        plan, index=False)
    monkeypatch.setattr(runner, "ANSWERS", str(tmp_path / "none.parquet"))  # no measured grid rows
    for env in (None, "1", "0"):
        if env is None:
            monkeypatch.delenv("SHADOWKV_LAB_REFILL", raising=False)
        else:
            monkeypatch.setenv("SHADOWKV_LAB_REFILL", env)
        assert notebook_grid.main(["--total", str(plan)]) == 0
        assert "at runner_h100_offloaded.json:" in capsys.readouterr().out
    rows = pd.DataFrame({"config": ['{"offload": true}'] * 3 + ['{"offload": false}'], "recorded": [False] * 4,
                         "new_tokens": [11, 21, 31, 41], "decode_share_s": [1.0, 1.0, 1.0, 1.0],
                         "device_name": ["gpu"] * 4, "git_commit": ["abcdef0"] * 4})
    rows.to_parquet(tmp_path / "cells.parquet")
    monkeypatch.setattr(runner, "ANSWERS", str(tmp_path / "cells.parquet"))
    monkeypatch.setattr(runner, "GRID_RATE_MIN_ROWS", 3)
    assert notebook_grid.main(["--total", str(plan)]) == 0
    out = capsys.readouterr().out
    assert "decode 20 tok/s" in out and "decode: 3 rows of cells.parquet with values offloaded" in out
    monkeypatch.setenv("SHADOWKV_LAB_REFILL", "no")
    with pytest.raises(ValueError, match="SHADOWKV_LAB_REFILL='no': allowed 0, 1"):
        notebook_grid.main(["--total", str(plan)])


def test_measured_recorded_rate_is_rows_per_step_time(tmp_path):
    """Per decode call (a timestamp): its rows over the time one step took (longest decode_s / most new tokens),
    weighted by the calls' time; unrecorded rows and files without recorded rows give nothing."""
    from shadowkv_lab.runner import measured_recorded_rate

    f = tmp_path / "cells.parquet"
    pd.DataFrame({"recorded": [True, True, True, False], "timestamp": ["t1", "t1", "t2", "t3"],
                  "batch_rows": [50, 50, 10, 100], "new_tokens": [100, 150, 20, 999], "decode_s": [200.0, 300.0, 10.0, 1.0],
                  "git_commit": ["a" * 40] * 4, "device_name": ["H100"] * 4}).to_parquet(f)
    r = measured_recorded_rate(str(f))
    assert r["decode_tok_s"] == pytest.approx((50 * 150 + 10 * 20) / (300 + 10))
    assert "3 recorded rows" in r["source"] and "2 decode calls" in r["source"] and "aaaaaaa" in r["source"]
    pd.DataFrame({"recorded": [False], "timestamp": ["t"], "batch_rows": [1], "new_tokens": [1], "decode_s": [1.0],
                  "git_commit": ["a"], "device_name": ["x"]}).to_parquet(f)
    assert measured_recorded_rate(str(f)) is None and measured_recorded_rate(str(tmp_path / "none.parquet")) is None
    # rows that carry their share of the decode calls' time give the rate exactly: decode tokens over shares
    pd.DataFrame({"recorded": [True, True, False], "timestamp": ["t1", "t2", "t3"], "batch_rows": [50, 50, 9],
                  "new_tokens": [101, 51, 9], "decode_s": [9.0, 9.0, 9.0], "decode_share_s": [2.0, 3.0, 1.0],
                  "git_commit": ["b" * 40] * 3, "device_name": ["H100"] * 3}).to_parquet(f)
    r = measured_recorded_rate(str(f))
    assert r["decode_tok_s"] == pytest.approx((100 + 50) / (2.0 + 3.0)) and "shares" in r["source"]


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
