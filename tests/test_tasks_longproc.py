"""LongProc HTML-to-TSV: loader on the bundled fixture (published layout) and the reference scorer."""

import json
import shutil

import pytest

from shadowkv_lab.tasks import get_task
from shadowkv_lab.tasks.longproc import FIXTURE, extract_tsv, load_longproc, normalize_cell, score

GOLD = "name\tcountry\theight\nNorth Point Light\tNorway\t32 m\nThe Skerry Beacon\tScotland\t18 m\nCape Vigil\tIceland\t15 m\n"
ROWS = ["North Point Light\tNorway\t32 m", "The Skerry Beacon\tScotland\t18 m", "Cape Vigil\tIceland\t15 m"]


def fenced(*lines, header="name\tcountry\theight") -> str:
    return "Here you go:\n```tsv\n" + "\n".join([header, *lines]) + "\n```\n"


# -- loader --------------------------------------------------------------------------------------

def test_fixture_loads_in_published_layout():
    s = load_longproc(FIXTURE, split="0.5k")
    assert [x.id for x in s] == ["longproc-W900_0.5k_1", "longproc-W901_0.5k_1"]
    first = s[0]
    assert "<table id=\"lighthouses\">" in first.prompt  # {html_str}
    assert "Historic lighthouses" in first.prompt and "(1) Name; (2) Country; (3) Height" in first.prompt
    assert "name\tcountry\theight" in first.prompt and "```tsv" in first.prompt
    assert "Only include posts published in 2021." in s[1].prompt  # {filtering_instruction}
    assert first.gold.startswith("name\tcountry\theight\n")
    assert first.meta["task_id"] == "W900_0.5k_1" and first.meta["max_new_tokens"] == 1024
    # file names, not the machine's paths: rows are committed and must not name where the data lay
    assert first.meta["prompt_template"] == "prompts.yaml" and first.meta["source"] == "html_to_tsv_0.5k.json"


def test_split_selection_and_caps():
    t = get_task("longproc_html_to_tsv")
    s8 = t.load(FIXTURE, split="8k")
    assert len(s8) == 1 and t.max_new_tokens_for(s8[0]) == 9216
    s05 = t.load(FIXTURE / "html_to_tsv", split="0.5k", n=1)  # the html_to_tsv folder itself
    assert len(s05) == 1 and t.max_new_tokens_for(s05[0]) == 1024
    direct = load_longproc(FIXTURE / "html_to_tsv" / "html_to_tsv_0.5k.json")  # a split file
    assert len(direct) == 2
    assert t.primary_metric == "f1" and t.max_new_tokens == 9216


def test_gold_scores_100_on_every_fixture_sample():
    t = get_task("longproc_html_to_tsv")
    for split in ("0.5k", "8k"):
        for s in load_longproc(FIXTURE, split=split):
            assert t.score("```tsv\n" + s.gold + "```", s.gold) == {"f1": 100.0, "precision": 100.0, "recall": 100.0}


def test_default_path_is_fixture_with_warning():
    with pytest.warns(UserWarning, match="fixture"):
        s = get_task("longproc_html_to_tsv").load(split="0.5k")
    assert len(s) == 2


def test_loader_errors(tmp_path):
    with pytest.raises(ValueError):
        load_longproc(FIXTURE, split="4k")
    with pytest.raises(FileNotFoundError):
        load_longproc(FIXTURE, split="2k")  # not in the fixture
    with pytest.raises(FileNotFoundError):
        load_longproc(tmp_path)
    # a split whose html page is missing names the paths it tried
    d = tmp_path / "html_to_tsv"
    d.mkdir()
    (d / "html_to_tsv_0.5k.json").write_text(json.dumps([{"html_path": "./webpage/none.html", "task_id": "x"}]))
    with pytest.raises(FileNotFoundError, match="none.html"):
        load_longproc(tmp_path, split="0.5k")


def test_without_prompts_yaml_uses_builtin_template(tmp_path):
    shutil.copytree(FIXTURE, tmp_path / "lp")
    (tmp_path / "lp" / "html_to_tsv" / "prompts.yaml").unlink()
    s = load_longproc(tmp_path / "lp", split="0.5k")
    assert s[0].meta["prompt_template"] == "builtin" and "```tsv" in s[0].prompt and "Norway" in s[0].prompt


def test_hub_offline_error(monkeypatch):
    import datasets

    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: (_ for _ in ()).throw(ConnectionError("offline")))
    with pytest.raises(RuntimeError, match="Offline"):
        load_longproc("someone/longproc", split="8k")


# -- scorer --------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "prediction, expected",
    [
        (fenced(*ROWS), (100, 100, 100)),
        ("\n".join(["name\tcountry\theight", *ROWS]), (100, 100, 100)),  # no fence: whole output
        ("```tsv\n" + "\n".join(["h1\th2\th3", *ROWS]) + "\n```", (100, 100, 100)),  # header not scored
        (fenced(*reversed(ROWS)), (100, 100, 100)),  # order does not matter
        (fenced(ROWS[0], ROWS[1]), (80, 100, 200 / 3)),  # f1, precision, recall
        (fenced(*ROWS, "Extra Light\tNowhere\t1 m"), (2 * 0.75 / 1.75 * 100, 75, 100)),
        (fenced(*ROWS, "That is all."), (100, 100, 100)),  # wrong-length last row dropped
        (fenced(ROWS[0], "broken row", ROWS[1], ROWS[2]), (2 * 0.75 / 1.75 * 100, 75, 100)),  # middle -> N/A
        (fenced("north point light\tnorway\t32m", "skerry beacon\tscotland\t18 m.", "CAPE  VIGIL\tIceland\t15 m"), (100, 100, 100)),
        (fenced(*[r + "\textra" for r in ROWS], header="name\tcountry\theight\textra"), (0, 0, 0)),  # width mismatch
        (fenced(), (0, 0, 0)),  # header only
        ("", (0, 0, 0)),
        ("I could not find any items.", (0, 0, 0)),
    ],
)
def test_scorer(prediction, expected):
    out = score(prediction, GOLD)
    assert set(out) == {"f1", "precision", "recall"}
    f1, p, r = expected
    assert out["precision"] == pytest.approx(p) and out["recall"] == pytest.approx(r) and out["f1"] == pytest.approx(f1)


def test_duplicate_predicted_rows_each_count_for_precision():
    # precision is per predicted row: a duplicate of a correct row is still "in the gold"
    out = score(fenced(*ROWS, ROWS[0]), GOLD)
    assert out["precision"] == 100.0 and out["recall"] == 100.0


def test_greedy_fence_extraction():
    text = "```tsv\na\tb\n1\t2\n```\nand more\n```\n"
    assert extract_tsv(text) == "a\tb\n1\t2\n```\nand more"  # greedy to the last ```, as the reference
    assert extract_tsv("```tsv\na\tb\n1\t2") == "a\tb\n1\t2"  # unterminated fence
    assert extract_tsv("  a\tb  ") == "a\tb"


@pytest.mark.parametrize(
    "cell, norm",
    [("The Skerry Beacon", "skerrybeacon"), ("A  tale of an Apple!", "taleofapple"), ("$12.50", "1250"),
     ("N/A", "na"), ("Theatre", "theatre"), ("  Multiple   spaces ", "multiplespaces")],
)
def test_normalize_cell(cell, norm):
    assert normalize_cell(cell) == norm


@pytest.mark.parametrize("prediction", [None, 12, ["```tsv"]])
def test_scorer_never_raises(prediction):
    assert score(prediction, GOLD) == {"f1": 0.0, "precision": 0.0, "recall": 0.0}


def test_invalid_gold_scores_zero():
    assert score(fenced(*ROWS), "only a header")["f1"] == 0.0
    assert get_task("longproc_html_to_tsv").score(fenced(*ROWS), None)["f1"] == 0.0


def test_records_written_by_the_data_command_load_back(tmp_path):
    # the reproduction reads LongProc from the records JSONL that `python -m shadowkv_lab data` writes, not from the
    # published folder: the same samples, with each split's cap kept in meta
    from shadowkv_lab.runner import resolve_tasks
    from shadowkv_lab.tasks.jsonl import write_jsonl

    task = get_task("longproc_html_to_tsv")
    samples = load_longproc(FIXTURE, split="0.5k")
    path = tmp_path / "longproc_0.5k.jsonl"
    write_jsonl(path, (task.to_record(s) for s in samples))
    (_, back), = resolve_tasks(["longproc_html_to_tsv"], data=str(path))
    assert [(s.id, s.prompt, s.gold, s.meta) for s in back] == [(s.id, s.prompt, s.gold, s.meta) for s in samples]
    assert len(back) == 2 and {task.max_new_tokens_for(s) for s in back} == {1024}  # not the task default, 9,216
    assert len(task.load(path, n=1)) == 1
