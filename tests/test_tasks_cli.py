"""Registry interface and the data/score CLI round trip (argparse, in-process)."""

import argparse
import json
import math

import pytest

from shadowkv_lab.tasks import TASKS, Sample, Task, aggregate, get_task
from shadowkv_lab.tasks.cli import register

NAMES = ["text2json", "multineedle", "longproc_html_to_tsv", "ruler_niah_single", "ruler_niah_multikey",
         "ruler_niah_multivalue", "ruler_niah_multiquery", "ruler_vt", "ruler_fwe"]


def parser():
    p = argparse.ArgumentParser(prog="shadowkv-lab")
    register(p.add_subparsers(dest="command", required=True))
    return p


def run(argv):
    args = parser().parse_args(argv)
    return args.func(args)


def test_registry():
    assert sorted(TASKS) == sorted(NAMES)
    for name in NAMES:
        t = get_task(name)
        assert isinstance(t, Task) and t.name == name and t.max_new_tokens > 0 and t.primary_metric
    with pytest.raises(ValueError, match="text2json"):
        get_task("nope")
    assert get_task("text2json").max_new_tokens == 1024 and get_task("multineedle").max_new_tokens == 1024


def test_sample_validation():
    with pytest.raises(ValueError):
        Sample(id="", prompt="p", gold=None, meta={})
    with pytest.raises(TypeError):
        Sample(id="a", prompt=None, gold=None, meta={})
    with pytest.raises(TypeError):
        Sample(id="a", prompt="p", gold=None, meta=[])


def test_aggregate_excludes_nan():
    out = aggregate([{"score": 100.0, "x": 1.0}, {"score": math.nan, "x": 3.0}, {"score": 50.0, "x": 2.0}])
    assert out == {"score": 75.0, "x": 2.0, "n": 3, "n_invalid": 1}


def test_text2json_round_trip(tmp_path, capsys):
    data = tmp_path / "t2j.jsonl"
    assert run(["data", "text2json", "--n", "4", "--tokens", "1500", "--seed", "2", "--out", str(data),
                "--set", "n_gold=4"]) == 0
    assert "wrote 4 text2json samples" in capsys.readouterr().out
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    assert set(rows[0]) == {"id", "problem", "answer", "meta"}
    preds = tmp_path / "pred.jsonl"
    with open(preds, "w") as f:
        f.write(json.dumps({"id": rows[0]["id"], "prediction": "```json\n" + rows[0]["answer"] + "\n```"}) + "\n")
        f.write(json.dumps({"id": rows[1]["id"], "prediction": "I don't know"}) + "\n")
        f.write(json.dumps({"id": rows[2]["id"], "prediction": rows[2]["answer"] + " " + rows[2]["answer"]}) + "\n")
        f.write(json.dumps({"id": "stranger", "prediction": "[]"}) + "\n")
    scores = tmp_path / "scores.jsonl"
    assert run(["score", "text2json", "--pred", str(preds), "--data", str(data), "--out", str(scores)]) == 0
    out = capsys.readouterr().out
    assert "text2json: score=25.00 over 4 samples" in out and "missing predictions 1" in out and "unknown ids 1" in out
    assert "score_lenient=50.00" in out
    per = [json.loads(line) for line in scores.read_text().splitlines()]
    assert [r["score"] for r in per] == [100.0, 0.0, 0.0, 0.0]
    assert [r["score_lenient"] for r in per] == [100.0, 0.0, 100.0, 0.0]
    assert [r["missing"] for r in per] == [False, False, False, True]


@pytest.mark.parametrize("name", ["ruler_niah_multiquery", "multineedle", "ruler_vt"])
def test_generated_round_trip(tmp_path, capsys, name):
    data, preds = tmp_path / "d.jsonl", tmp_path / "p.jsonl"
    run(["data", name, "--n", "2", "--tokens", "2048", "--out", str(data)])
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    gold_text = lambda g: " ".join(x["arg2"] if isinstance(x, dict) else x for x in g)  # noqa: E731
    preds.write_text("".join(json.dumps({"id": r["id"], "prediction": gold_text(r["gold"])}) + "\n" for r in rows))
    run(["score", name, "--pred", str(preds), "--data", str(data)])
    assert f"{name}: score=100.00 over 2 samples" in capsys.readouterr().out
    # our records load back through task.load(path) as well
    assert [s.id for s in get_task(name).load(data)] == [r["id"] for r in rows]


def test_longproc_from_source(tmp_path, capsys):
    from shadowkv_lab.tasks.longproc import FIXTURE

    data, preds = tmp_path / "lp.jsonl", tmp_path / "p.jsonl"
    run(["data", "longproc_html_to_tsv", "--source", str(FIXTURE), "--set", "split=0.5k", "--out", str(data)])
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    preds.write_text(json.dumps({"id": rows[0]["id"], "prediction": "```tsv\n" + rows[0]["gold"] + "```"}) + "\n")
    run(["score", "longproc_html_to_tsv", "--pred", str(preds), "--data", str(data)])
    assert "longproc_html_to_tsv: f1=50.00 over 2 samples" in capsys.readouterr().out


def test_tokenizer_flag_uses_models_load_tokenizer(tmp_path, monkeypatch):
    import sys
    import types

    class Tok:
        name_or_path = "fake"

        def encode(self, text, add_special_tokens=False):
            return text.split()

    fake = types.ModuleType("shadowkv_lab.models")
    fake.load_tokenizer = lambda name: Tok()
    monkeypatch.setitem(sys.modules, "shadowkv_lab.models", fake)
    data = tmp_path / "d.jsonl"
    run(["data", "ruler_niah_single", "--n", "1", "--tokens", "600", "--out", str(data), "--tokenizer", "whatever"])
    row = json.loads(data.read_text())
    assert row["meta"]["length_unit"] == "tokens(fake)"


def test_unknown_task_is_an_argparse_error():
    with pytest.raises(SystemExit):
        parser().parse_args(["data", "nope", "--out", "x"])


def test_option_errors(tmp_path):
    from shadowkv_lab.tasks.text2json import write_text2json

    path = tmp_path / "t.jsonl"
    write_text2json(path, get_task("text2json").load(n=1, tokens=1024))
    with pytest.raises(TypeError, match="generated data"):
        get_task("text2json").load(path, n_gold=3)
    with pytest.raises(TypeError):
        get_task("text2json").load(n=1, tokens=1024, not_a_knob=1)
    with pytest.raises(ValueError, match="no haystack"):
        get_task("ruler_fwe").load(tmp_path / "hay.txt", n=1)
    with pytest.raises(TypeError):
        get_task("longproc_html_to_tsv").load(tokens=5, depth=3)


def test_text2json_named_difficulty(tmp_path, capsys):
    data = tmp_path / "cal.jsonl"
    assert run(["data", "text2json", "--n", "2", "--tokens", "2500", "--out", str(data), "--set", "difficulty=calibrated"]) == 0
    rows = [json.loads(x) for x in data.read_text().splitlines()]
    assert [r["meta"]["n_gold"] for r in rows] == [6, 6]
    assert rows[0]["problem"].startswith("Read the text below.")
    with pytest.raises(ValueError, match="'nope'.*spec, easy, calibrated"):
        run(["data", "text2json", "--n", "1", "--tokens", "2500", "--out", str(tmp_path / "x.jsonl"), "--set", "difficulty=nope"])
