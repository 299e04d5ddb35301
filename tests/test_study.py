"""The study's grid (shadowkv_lab.study): its data files, the workbook reading them, and stored-only grids."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from shadowkv_lab import study, workbook
from shadowkv_lab.runner import MissingCells, resolve_tasks, run
from shadowkv_lab.tasks import get_task
from shadowkv_lab.tasks.jsonl import write_jsonl

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny():
    from shadowkv_lab.testing import tiny_model

    return tiny_model("qwen2")


def _write(folder: Path, task: str, tokens: int, n: int, seed: int) -> Path:
    """A data file as `python -m shadowkv_lab data` writes it, under the study's name for (task, tokens)."""
    t = get_task(task)
    path = folder / study.DATA_FILES[(task, tokens)]
    write_jsonl(path, (t.to_record(s) for s in t.load(None, n=n, tokens=tokens, seed=seed)))
    return path


def test_every_part_names_its_data_file_and_methods():
    for name, part in study.PARTS.items():
        assert part.data.endswith(".jsonl") and part.batch_size >= 1
        if part.tokens is not None:
            assert study.DATA_FILES[(part.task, part.tokens)] == part.data
        names = [c.name for c in study.methods_of(name)]
        assert len(names) == len(set(names)) and names, name
    assert {c.name for c in study.methods_of("t2j16_ablation")} == {c.name for c in study.ablations()}
    assert "yakv" in study.MAIN and "yakv_centred" in study.MAIN and "full" in study.MAIN


def test_data_file_errors_name_the_value_and_what_exists(tmp_path):
    with pytest.raises(ValueError, match=r"'ruler_fwe' at 16384 tokens.*text2json@16384"):
        study.data_file(tmp_path, "ruler_fwe", 16384)
    with pytest.raises(FileNotFoundError, match="t2j_8k.jsonl missing"):
        study.data_file(tmp_path, "text2json", 8192)


def test_reproduce_lists_its_parts():
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "reproduce.py"), "--list"], capture_output=True,
                       text=True, timeout=120, check=True)
    assert all(name in r.stdout for name in study.PARTS)
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "reproduce.py"), "t2j99"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode != 0 and "unknown part(s) ['t2j99']" in r.stderr


def test_workbook_reads_the_same_samples_as_the_reproduction(tmp_path):
    """samples_for(data_dir=...) gives the cells reproduce.py stores (runner.run with data=the file): same ids and
    prompts, the file's first n; seed and generator knobs do not apply."""
    path = _write(tmp_path, "ruler_niah_single", 16384, n=3, seed=200)
    [(task, samples)] = workbook.samples_for(["ruler_niah_single"], None, n=2, tokens=16384, seed=0,
                                             task_kw={"ruler_niah_single": {"key_type": "uuids"}}, data_dir=tmp_path)
    [(_, reference)] = resolve_tasks(["ruler_niah_single"], n=2, data=str(path))
    assert task.name == "ruler_niah_single"
    assert [(s.id, s.prompt) for s in samples] == [(s.id, s.prompt) for s in reference]
    generated = workbook.samples_for(["ruler_niah_single"], None, n=2, tokens=16384, seed=0)[0][1]
    assert {s.id for s in generated}.isdisjoint(s.id for s in samples)  # another seed: other cells
    with pytest.raises(ValueError, match="holds 3 ruler_niah_single samples, fewer than n=5"):
        workbook.samples_for(["ruler_niah_single"], None, n=5, tokens=16384, data_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="mn_16k.jsonl missing"):
        workbook.samples_for(["multineedle"], None, n=1, tokens=16384, data_dir=tmp_path)


def test_stored_only_returns_stored_rows_or_names_the_missing(tiny, tmp_path, monkeypatch):
    model, tok = tiny
    task = get_task("ruler_niah_single")
    samples = task.load(None, n=2, tokens=600, seed=3, tokenizer=tok)
    out = tmp_path / "store"
    stored = run(model, tok, [(task, samples[:1])], ["full"], out, model_name="tiny", max_new_tokens=3, progress=False)
    assert len(stored) == 1
    shards = sorted(out.glob("*.parquet"))

    import shadowkv_lab.runner as runner

    monkeypatch.setattr(runner, "prefill", lambda *a, **k: pytest.fail("stored_only must not run a cell"))
    again = run(model, tok, [(task, samples[:1])], ["full"], out, model_name="tiny", max_new_tokens=3, progress=False,
                stored_only=True)
    assert list(again.prediction) == list(stored.prediction) and list(again.config_hash) == list(stored.config_hash)
    with pytest.raises(MissingCells) as e:
        run(model, tok, [(task, samples)], ["full", "yakv"], out, model_name="tiny", max_new_tokens=3, progress=False,
            stored_only=True)
    assert len(e.value.cells) == 3 and "yakv x 2" in str(e.value) and "full x 1" in str(e.value)
    assert f"ruler_niah_single/{samples[1].id}/full" in e.value.cells
    assert sorted(out.glob("*.parquet")) == shards  # nothing written
    with pytest.raises(ValueError, match="stored_only='yes'"):
        run(model, tok, [(task, samples)], ["full"], out, model_name="tiny", stored_only="yes")


def test_workbook_stored_mode(tiny, tmp_path, monkeypatch):
    model, tok = tiny
    task = get_task("ruler_niah_single")
    samples = task.load(None, n=1, tokens=600, seed=4, tokenizer=tok)
    monkeypatch.setenv(workbook.GRID_ENV, "stored")
    with pytest.raises(MissingCells, match="1 cell"):
        workbook.run(model, tok, [(task, samples)], ["full"], tmp_path, model_name="tiny", n=1, tokens=600,
                     max_new_tokens=3)
    monkeypatch.setenv(workbook.GRID_ENV, "later")
    with pytest.raises(ValueError, match="'later': allowed dry, run, stored"):
        workbook.run(model, tok, [(task, samples)], ["full"], tmp_path, model_name="tiny", n=1, tokens=600)


def test_workbook_refill_from_the_environment(tiny, tmp_path, monkeypatch):
    """Every notebook's grid refills waves unless SHADOWKV_LAB_REFILL=0 (same tokens either way); other values fail."""
    from shadowkv_lab import runner

    model, tok = tiny
    task = get_task("ruler_niah_single")
    samples = task.load(None, n=2, tokens=600, seed=5, tokenizer=tok)
    kw = dict(model_name="tiny", n=2, tokens=600, max_new_tokens=4, batch_size=2)
    seen = []
    real = runner.run
    monkeypatch.setattr(runner, "run", lambda *a, **k: seen.append(k["refill"]) or real(*a, **k))
    monkeypatch.setenv("SHADOWKV_LAB_REFILL", "0")
    plain = workbook.run(model, tok, [(task, samples)], ["full", "yakv"], tmp_path / "a", **kw)
    monkeypatch.delenv("SHADOWKV_LAB_REFILL")
    refilled = workbook.run(model, tok, [(task, samples)], ["full", "yakv"], tmp_path / "b", **kw)
    assert seen == [False, True]
    key = ["sample_id", "config_hash"]
    assert plain.sort_values(key).prediction.tolist() == refilled.sort_values(key).prediction.tolist()
    monkeypatch.setenv("SHADOWKV_LAB_REFILL", "yes")
    with pytest.raises(ValueError, match="SHADOWKV_LAB_REFILL='yes': allowed 0, 1"):
        workbook.run(model, tok, [(task, samples)], ["full"], tmp_path / "c", **kw)
