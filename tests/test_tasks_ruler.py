"""RULER-style generators (gold present, lengths, determinism) and the string-match scorer."""

import math
import re
from collections import Counter

import pytest

from shadowkv_lab.tasks import TASKS, get_task
from shadowkv_lab.tasks.ruler import NIAH, score
from regex_tokenizer import RegexTokenizer
from shadowkv_lab.tasks.tokens import TokenCounter

RULER = [n for n in TASKS if n.startswith("ruler_")]


def test_six_variants_registered():
    assert sorted(RULER) == sorted(["ruler_niah_single", "ruler_niah_multikey", "ruler_niah_multivalue",
                                    "ruler_niah_multiquery", "ruler_vt", "ruler_fwe"])


@pytest.mark.parametrize("name", RULER)
@pytest.mark.parametrize("tokens", [1024, 4096])
def test_gold_in_prompt_and_length(name, tokens):
    task = get_task(name)
    for tok in (None, RegexTokenizer()):
        s = task.load(n=2, tokens=tokens, seed=0, tokenizer=tok)
        for x in s:
            n = TokenCounter(tok).count(x.prompt)
            assert abs(n - tokens) <= 0.05 * tokens and x.meta["n_tokens"] == n
            assert x.gold and all(g in x.prompt for g in x.gold)
            assert task.score(" ".join(x.gold), x.gold) == {"score": 100.0}
            assert 1 <= task.max_new_tokens_for(x) <= 128


def test_niah_structure():
    s = get_task("ruler_niah_single").load(n=1, tokens=2048)[0]
    assert "The grass is green." in s.prompt and len(s.gold) == 1 and re.fullmatch(r"\d{7}", s.gold[0])
    assert s.prompt.count("One of the special magic numbers") == 1
    mk = get_task("ruler_niah_multikey").load(n=1, tokens=2048)[0]
    assert mk.prompt.count("One of the special magic numbers") == 4 and len(mk.gold) == 1
    assert mk.meta["queried"][0] in mk.prompt.splitlines()[-1]
    mv = get_task("ruler_niah_multivalue").load(n=1, tokens=2048)[0]
    key = mv.meta["keys"][0]
    assert len(mv.gold) == 4 and mv.prompt.count(f"for {key} is:") == 4
    mq = get_task("ruler_niah_multiquery").load(n=1, tokens=2048)[0]
    assert len(mq.gold) == 4 and all(k in mq.prompt.splitlines()[-1] for k in mq.meta["queried"])
    assert set(NIAH) == {n for n in RULER if "niah" in n}


def test_niah_value_types():
    s = get_task("ruler_niah_single").load(n=1, tokens=1024, value_type="uuids")[0]
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", s.gold[0])


def test_vt_chain():
    s = get_task("ruler_vt").load(n=1, tokens=2048, seed=4)[0]
    chain, value = s.meta["chains"][0], s.meta["values"][0]
    assert s.gold == chain and len(chain) == 5
    assert f"VAR {chain[0]} = {value}." in s.prompt
    pos = [s.prompt.index(f"VAR {chain[i]} = VAR {chain[i - 1]}.") for i in range(1, 5)]
    assert pos == sorted(pos) and s.prompt.index(f"VAR {chain[0]} = {value}.") < pos[0]
    assert s.prompt.rstrip().endswith(f"assigned the value {value} in the text above.")


def test_fwe_top_three_are_strict():
    for seed in range(5):
        s = get_task("ruler_fwe").load(n=1, tokens=1024, seed=seed)[0]
        ctx = s.prompt.split("coded words. ", 1)[1].rsplit("\nQuestion:", 1)[0]
        counts = Counter(w for w in ctx.split() if w != "....")
        top = counts.most_common()
        assert {w for w, _ in top[:3]} == set(s.gold)
        assert top[2][1] > top[3][1]


def test_determinism_and_seeds():
    t = get_task("ruler_niah_multikey")
    a, b = t.load(n=2, tokens=1024, seed=3), t.load(n=2, tokens=1024, seed=3)
    assert [x.prompt for x in a] == [x.prompt for x in b]
    assert a[0].prompt != a[1].prompt


def test_haystack_from_path(tmp_path):
    (tmp_path / "book.txt").write_text("It was a dark night. The wind blew hard! Nobody slept.\n" * 50)
    s = get_task("ruler_niah_multivalue").load(tmp_path / "book.txt", n=1, tokens=1024)[0]
    assert "The wind blew hard!" in s.prompt and all(g in s.prompt for g in s.gold)


@pytest.mark.parametrize(
    "pred, gold, expected",
    [("The numbers are 123 and 456.", ["123", "456"], 100.0), ("only 123", ["123", "456"], 50.0),
     ("ABCDE, fghij", ["abcde", "FGHIJ"], 100.0), ("", ["1"], 0.0), (None, ["1"], 0.0), ("x", "x", 100.0)],
)
def test_scorer(pred, gold, expected):
    assert score(pred, gold) == expected


def test_scorer_empty_gold_is_nan():
    assert math.isnan(score("x", []))
