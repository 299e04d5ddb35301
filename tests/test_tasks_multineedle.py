"""MultiNeedle: needle selection, insertion depths (chars and tokens), haystack sources, lengths, scorer."""

import json
import math
import re

import pytest

from shadowkv_lab.tasks import get_task
from shadowkv_lab.tasks.multineedle import (
    DEPTHS,
    build_question,
    generate,
    generate_sample,
    insert_needles,
    select_needles,
    synthetic_needles,
)
from regex_tokenizer import RegexTokenizer
from shadowkv_lab.tasks.tokens import TokenCounter


def context_of(prompt: str) -> str:
    return prompt.split("<Document>\n", 1)[1].rsplit("\n</Document>", 1)[0]


def test_insert_needles_formula():
    seq = "0123456789"
    out, placed = insert_needles(seq, ["A", "BB", "C"], [0, 50, 100])
    # points 0, 5, 10 in the original; offsets 0, 1, 3
    assert placed == [0, 6, 13] and out == "A01234BB56789C"
    lst, placed = insert_needles(list(range(10)), [["x"], ["y"]], [10, 90])
    assert placed == [1, 10] and lst == [0, "x", 1, 2, 3, 4, 5, 6, 7, 8, "y", 9]


def test_char_mode_insertion_points_and_depth_order():
    s = generate_sample(3, tokens=4096)
    ctx = context_of(s.prompt)
    needles, points, L = s.meta["needles"], s.meta["insertion_points"], s.meta["haystack_length"]
    assert s.meta["insertion_unit"] == "chars" and len(needles) == 11 == len(DEPTHS)
    offset = 0
    for needle, depth, at in zip(needles, DEPTHS, points):
        assert at == min(int(L * depth / 100) + offset, L + offset)
        assert ctx[at:at + len(needle)] == needle
        offset += len(needle)
    assert len(ctx) == L + offset
    assert [g["depth"] for g in s.gold] == list(DEPTHS)
    assert [ctx.index(g["arg2"]) for g in s.gold] == sorted(ctx.index(g["arg2"]) for g in s.gold)


def test_token_mode_insertion():
    tok = RegexTokenizer()
    s = generate_sample(0, tokens=4096, tokenizer=tok)
    assert s.meta["insertion_unit"] == "tokens"
    ctx = context_of(s.prompt)
    pos = [ctx.index(n) for n in s.meta["needles"]]
    assert pos == sorted(pos)
    # depth d sits at about d% of the haystack tokens
    L = s.meta["haystack_length"]
    for d, at, k in zip(DEPTHS, s.meta["insertion_points"], range(11)):
        assert abs((at - sum(len(tok.encode(n)) for n in s.meta["needles"][:k])) - int(L * d / 100)) <= 1


@pytest.mark.parametrize("tokens", [4096, 16384])
def test_length_is_tokens_minus_buffer(tokens):
    tok = RegexTokenizer()
    for tk in (None, tok):
        s = generate_sample(1, tokens=tokens, tokenizer=tk)
        n = TokenCounter(tk).count(s.prompt)
        target = tokens - s.meta["buffer"]
        assert abs(n - target) <= 0.05 * target and s.meta["n_tokens"] == n
    assert generate_sample(0, tokens=128_000).meta["buffer"] == 3000


def write_needles(path):
    rows = [{"needle": "ignored", "retrieval_question": "?", "gold_standard_answer": "", "arg1": "x", "arg2": "y",
             "type": "t", "language": "Chinese"}]
    rows += synthetic_needles(__import__("random").Random(0), 14)
    rows.insert(3, dict(rows[2]))  # a duplicate arg1/arg2 must be skipped
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
        f.write("not json\n")
    return rows


def test_needle_file_selection(tmp_path):
    rows = write_needles(tmp_path / "needles.jsonl")
    chosen = select_needles([r for r in rows], 11)
    assert all(r["language"] == "English" for r in chosen)
    assert len({r["arg1"] for r in chosen}) == 11 == len({r["arg2"] for r in chosen})
    expected = [r for r in rows if r["language"] == "English"]
    expected = [r for i, r in enumerate(expected) if r not in expected[:i]][:11]  # first 11 unique, file order
    assert chosen == expected
    with pytest.raises(ValueError):
        select_needles(rows[:5], 11)
    samples = generate(2, tokens=4096, seed=0, needles=tmp_path / "needles.jsonl")
    assert {g["arg2"] for g in samples[0].gold} == {r["arg2"] for r in chosen}
    assert [g["arg2"] for g in samples[0].gold] != [g["arg2"] for g in samples[1].gold]  # seed shuffles needles


def test_seed_determinism():
    a, b, c = generate_sample(7, tokens=4096), generate_sample(7, tokens=4096), generate_sample(8, tokens=4096)
    assert a.prompt == b.prompt and a.gold == b.gold and a.prompt != c.prompt


def test_haystack_from_text_and_jsonl(tmp_path):
    text = "Alpha beta gamma. Delta epsilon zeta!\n\nEta theta iota? Kappa lambda mu. " * 40
    (tmp_path / "hay.txt").write_text(text)
    s = get_task("multineedle").load(tmp_path / "hay.txt", n=1, tokens=4096)[0]
    assert "Alpha beta gamma." in s.prompt and s.meta["haystack_repeated"]  # short file: repeated
    assert s.meta["source"] == "hay.txt"  # the file's name, not the machine's path
    essays = [{"title": f"t{i}", "text": f"Essay {i} begins here. It has words in it. It ends here."} for i in range(300)]
    (tmp_path / "essays.jsonl").write_text("".join(json.dumps(e) + "\n" for e in essays))
    s1 = get_task("multineedle").load(tmp_path / "essays.jsonl", n=2, tokens=4096, seed=0)
    assert "Essay" in s1[0].prompt and not s1[0].meta["haystack_repeated"]
    first = [re.search(r"Essay (\d+)", context_of(s.prompt)).group(1) for s in s1]
    assert first[0] != first[1]  # seed shuffles the essays


def test_haystack_cut_at_sentence_boundary():
    s = generate_sample(2, tokens=4096)
    ctx = context_of(s.prompt)
    for n in s.meta["needles"]:
        ctx = ctx.replace(n, "")
    assert ctx.rstrip()[-1] in ".!?"


def test_question_format():
    nds = synthetic_needles(__import__("random").Random(1), 2)
    q = build_question(nds)
    assert q.count("?") == 2 and "、" in q and "Please answer in the format of '" in q and q.endswith("______'")


def test_scorer():
    gold = [{"depth": d, "arg2": f"Ans{d}", "arg1": "", "question": ""} for d in DEPTHS]
    pred = "Ans0, Ans10 and ans20 and Ans100"
    out = get_task("multineedle").score(pred, gold)
    assert out["depth_0"] == 100.0 and out["depth_10"] == 100.0 and out["depth_20"] == 0.0  # case-sensitive
    assert out["depth_100"] == 100.0 and out["score"] == pytest.approx(300 / 11)
    assert set(out) == {"score"} | {f"depth_{d}" for d in DEPTHS}
    assert get_task("multineedle").score(json.dumps([gold[0]]), json.dumps(gold))["score"] == 100 / 11
    assert get_task("multineedle").score(None, gold)["score"] == 0.0
    assert math.isnan(get_task("multineedle").score("x", "garbage")["score"])


def test_all_gold_answers_score_100():
    s = generate_sample(4, tokens=4096)
    pred = "; ".join(g["arg2"] for g in s.gold)
    assert get_task("multineedle").score(pred, s.gold)["score"] == 100.0
