"""Text2JSON scorer: every reference rule of docs/tasks.md, the robustness additions, and a property test."""

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shadowkv_lab.tasks import get_task
from shadowkv_lab.tasks.text2json_score import (
    canonical, error_breakdown, parse_gold, score, score_lenient, score_salvaged,
)

GOLD = [{"name": "Alpha", "price": "$10", "weight": "2 kg"}, {"name": "Beta", "price": "$30", "weight": "4 kg"}]
A = {"name": "Alpha", "price": "$10", "weight": "2 kg"}
B = {"name": "Beta", "price": "$30", "weight": "4 kg"}


def js(x) -> str:
    return json.dumps(x, ensure_ascii=False)


@pytest.mark.parametrize(
    "prediction, expected",
    [
        # perfect, in any order, with surrounding prose, with ```json fences
        (js([A, B]), 100.0),
        (js([B, A]), 100.0),
        ("Here is the answer: " + js([A, B]) + " Hope it helps.", 100.0),
        ("```json\n" + js([A, B]) + "\n```", 100.0),
        # bracket rule: exactly one '[' and one ']', '[' first
        (js([A]) + "\n" + js([B]), 0.0),  # two lists
        ("]" + js(A) + "[", 0.0),  # ']' before '['
        (js(A), 0.0),  # no list at all
        (js([A, {**B, "weight": "[4 kg]"}]), 0.0),  # brackets inside a string
        (js([A, {**B, "tags": ["x"]}]), 0.0),  # nested list
        ("[" + js(A)[:-1] + "]", 0.0),  # one pair of brackets, invalid JSON between them
        ('[{"name": "Alpha"}', 0.0),  # truncated output
        ("", 0.0),
        # the span must be a list: a single bracket pair always parses to a list or fails
        ("[]", 0.0),  # empty prediction: union = 2, nothing matched
        # missing / null keys: -0.5 each
        (js([{"name": "Alpha", "price": "$10"}, B]), 75.0),
        (js([{"name": "Alpha", "price": "$10", "weight": None}, B]), 75.0),
        (js([{"name": "Alpha"}, B]), 50.0),
        # wrong values: -0.25 each
        (js([{**A, "price": "$11"}, B]), 87.5),
        (js([{**A, "price": "$11", "weight": "3 kg"}, B]), 75.0),
        (js([{**A, "price": "10"}, B]), 87.5),  # exact string comparison: "$10" != "10"
        (js([{**A, "price": "$10 "}, B]), 87.5),  # no whitespace normalisation in the reference
        # extra keys are ignored
        (js([{**A, "colour": "red"}, B]), 100.0),
        # unknown names add to the union
        (js([A, B, {"name": "Gamma", "price": "$1", "weight": "1 kg"}]), 100 * 2 / 3),
        (js([{**A, "name": "alpha"}, B]), 100 * 1 / 3),  # names are case sensitive
        # duplicates: the gold entry is consumed, the second copy is an extra
        (js([A, A, B]), 100 * 2 / 3),
        # missing gold entities
        (js([A]), 50.0),
        # non-string name -> extra
        (js([{"name": 5, "price": "$10"}, A, B]), 100 * 2 / 3),
        (js([{"price": "$10"}, A, B]), 100 * 2 / 3),
        # non-object elements count as extras (the reference crashes on them)
        (js([1, "Alpha", None, A, B]), 100 * 2 / 5),
        (js([[], A]), 0.0),  # nested list breaks the bracket rule first
    ],
)
def test_strict_rules(prediction, expected):
    assert score(prediction, GOLD) == pytest.approx(expected)


@pytest.mark.parametrize(
    "gold_value, pred_value, equal",
    [
        ("2019", 2019, True),  # ints compare through str()
        ("1.5", 1.5, True),
        ("2.0", 2, False),
        ("2", 2.0, False),  # str(2.0) == "2.0"
        ("true", True, True),  # booleans through JSON
        ("True", True, False),
        ('["a", "b"]', ["a", "b"], True),  # lists and objects through canonical JSON
        ('{"a": 1}', {"a": 1}, True),
        ("x", {"a": 1}, False),
        ("O\u2019Brien\u2019s", "O'Brien's", True),  # curly apostrophe folded on both sides
        ("O'Brien", "O\u2019Brien", True),
        ("\u2018quoted\u2019", "'quoted'", False),  # only U+2019 is folded
    ],
)
def test_value_comparison(gold_value, pred_value, equal):
    gold = [{"name": "Alpha", "v": gold_value}]
    pred = json.dumps([{"name": "Alpha", "v": pred_value}])
    if "[" in pred[1:-1] or "]" in pred[1:-1]:
        # list values break the bracket rule of the strict scorer; compare through the lenient one
        assert score(pred, gold) == 0.0
        assert score_lenient(pred, gold) == (100.0 if equal else 75.0)
    else:
        assert score(pred, gold) == (100.0 if equal else 75.0)


def test_curly_apostrophe_in_names():
    gold = [{"name": "Dara O\u2019Neill", "city": "Cork"}]
    assert score('[{"name": "Dara O\'Neill", "city": "Cork"}]', gold) == 100.0
    gold2 = [{"name": "Dara O'Neill", "city": "Cork"}]
    assert score('[{"name": "Dara O\u2019Neill", "city": "Cork"}]', gold2) == 100.0


def test_gold_values_that_are_not_strings():
    gold = [{"name": "Alpha", "year": 2019, "tags": None}]
    assert score('[{"name": "Alpha", "year": "2019", "tags": null}]', gold) == 50.0  # null pred: -0.5
    assert score('[{"name": "Alpha", "year": "2019", "tags": "x"}]', gold) == 75.0  # x != None: -0.25


@pytest.mark.parametrize(
    "gold",
    [
        [{"name": "Alpha", "v": "1"}, {"name": "Alpha", "v": "2"}],  # duplicate names
        [{"name": "O'Neill", "v": "1"}, {"name": "O\u2019Neill", "v": "2"}],  # duplicate after folding
        "not json",
        json.dumps({"name": "Alpha"}),  # not a list
        [{"v": "1"}],  # no name
        [{"name": 3}],  # non-string name
        ["Alpha"],  # not objects
        None,
    ],
)
def test_invalid_gold_is_nan(gold):
    assert math.isnan(score(js([A]), gold))
    assert math.isnan(score_lenient(js([A]), gold))
    assert parse_gold(gold) is None


def test_gold_as_json_string_and_empty_gold():
    assert score(js([A, B]), js(GOLD)) == 100.0
    assert score("[]", []) == 100.0  # nothing to find and nothing wrong
    assert score(js([A]), []) == 0.0


def test_lenient_vs_strict_on_two_lists():
    pred = "Draft: " + js([A]) + "\nFinal answer: " + js([A, B])
    assert score(pred, GOLD) == 0.0
    assert score_lenient(pred, GOLD) == 50.0  # the first parseable list


def test_lenient_brackets_inside_strings_and_garbage():
    pred = "[oops] " + js([A, {**B, "weight": "[4 kg]"}])
    assert score(pred, GOLD) == 0.0
    # "[oops]" is not JSON; the next '[' starts the real list; the bracketed weight is a wrong value
    assert score_lenient(pred, GOLD) == pytest.approx(87.5)
    assert score_lenient("no list here", GOLD) == 0.0
    assert score_lenient("```json\n" + js([A, B]) + "\n```", GOLD) == 100.0


@pytest.mark.parametrize("prediction", [None, 42, b"[]", ["x"]])
def test_non_string_predictions_score_zero(prediction):
    assert score(prediction, GOLD) == 0.0
    assert score_lenient(prediction, GOLD) == 0.0
    assert score_salvaged(prediction, GOLD) == 0.0


def test_salvaged_scores_a_looping_cut_off_list():
    """The answer, then the same objects again until the token cap: 0 under both rules, 100 salvaged; a changed
    repeat is an extra; a closed list without repeats scores as the lenient rule does."""
    loop = "```json\n[\n" + ",\n".join(js(o) for o in [A, B, A, B, A]) + ",\n  {\"name\": \"Al"
    assert score(loop, GOLD) == 0.0 and score_lenient(loop, GOLD) == 0.0
    assert score_salvaged(loop, GOLD) == 100.0
    assert score_salvaged(loop.replace(js(B), js({**B, "price": "$31"}), 1), GOLD) == pytest.approx(100 * 1.75 / 3)
    for pred in (js([A, B]), js([A]), js([A, {**B, "weight": "5 kg"}])):
        assert score_salvaged(pred, GOLD) == score_lenient(pred, GOLD)
    assert score_salvaged("no list", GOLD) == 0.0 and score_salvaged("[", GOLD) == 0.0


def test_error_breakdown_counts_every_kind_of_error():
    ents = [{"name": A["name"], "kind": "k", "gold": True}, {"name": B["name"], "kind": "k", "gold": True},
            {"name": "Other Thing", "kind": "other", "gold": False}]
    pred = js([{**A, "price": "wrong"}, {"name": "Other Thing", "price": "1"}, {"name": "Invented"}, A, 7])
    got = error_breakdown(pred, GOLD, ents)
    want_values = dict(values_right=len(A) - 2, values_wrong=1, values_missing=0)
    assert got == dict(gold=len(GOLD), found=1, missed=len(GOLD) - 1, extra_other_kind=1, extra_unknown=1, duplicates=1,
                       not_objects=1, unclosed=0, **want_values)
    loop = "[" + js(A) + "," + js(B) + "," + js(A)  # cut off by the cap: counted on the salvaged elements
    got = error_breakdown(loop, GOLD, None)
    assert got["unclosed"] == 1 and got["found"] == 2 and got["extra_unknown"] == 0
    assert error_breakdown(None, GOLD)["found"] == 0 and error_breakdown("x", [{"name": "a"}, {"name": "a"}]) == {}


def test_deeply_nested_prediction_does_not_raise():
    deep = "[" + '{"a":' * 5000 + "1" + "}" * 5000 + "]"
    assert score(deep, GOLD) == 0.0
    assert score_lenient(deep, GOLD) in (0.0,)


def test_canonical():
    assert canonical(None) is None
    assert canonical(7) == "7" and canonical(True) == "true" and canonical("a\u2019b") == "a'b"


def test_task_score_dict():
    t = get_task("text2json")
    out = t.score("```json\n" + js([A]) + "\n```", GOLD)
    assert out == {"score": 50.0, "score_lenient": 50.0, "score_salvaged": 50.0, "looped": 0.0}
    loop = "[" + ", ".join([js(A)] + [js(B)] * 5) + ", {"
    assert t.score(loop, GOLD) == {"score": 0.0, "score_lenient": 0.0, "score_salvaged": 100.0, "looped": 100.0}
    assert t.score(None, GOLD)["looped"] == 0.0 and t.score("", GOLD)["looped"] == 0.0
    assert t.primary_metric == "score" and t.max_new_tokens == 1024


# -- property test --------------------------------------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=8)
json_values = st.recursive(json_scalars, lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=5), kids, max_size=3), max_leaves=10)
name_text = st.sampled_from(["Alpha", "Beta", "O\u2019Neill", "O'Neill", "gamma", "", "Beta "])
pred_objects = st.lists(
    st.one_of(st.dictionaries(st.sampled_from(["name", "price", "weight", "x"]), json_values | name_text, max_size=4),
              json_values),
    max_size=6,
)
golds = st.lists(
    st.fixed_dictionaries({"name": name_text, "price": st.text(max_size=4) | st.integers(), "weight": json_scalars}),
    max_size=5,
)


def _valid(gold) -> bool:
    names = [g["name"].replace("\u2019", "'") for g in gold]
    return len(names) == len(set(names))


@settings(max_examples=300, deadline=None)
@given(pred=pred_objects, gold=golds, wrap=st.sampled_from(["{}", "```json\n{}\n```", "x{}y", "{}{}"]))
def test_property_structured_predictions(pred, gold, wrap):
    text = wrap.replace("{}", json.dumps(pred, allow_nan=True))
    for fn in (score, score_lenient, score_salvaged):
        v = fn(text, gold)
        if _valid(gold):
            assert 0.0 <= v <= 100.0
        else:
            assert math.isnan(v)
    b = error_breakdown(text, gold)
    assert (b["found"] + b["missed"] == len(gold)) if _valid(gold) else b == {}


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet=st.sampled_from(list('[]{}":,  abnme0123\\\u2019')) | st.characters(), max_size=60), gold=golds)
def test_property_arbitrary_text(text, gold):
    for fn in (score, score_lenient, score_salvaged):
        v = fn(text, gold)
        assert math.isnan(v) if not _valid(gold) else 0.0 <= v <= 100.0


# -- how an output ends (diagnostic for the loops to the token cap) -----------------------------------------------

def _obj(name, v="1"):
    return '{"name": "%s", "x": "%s"}' % (name, v)


@pytest.mark.parametrize("prediction, expected", [
    ("```json\n[" + ", ".join(_obj(n) for n in "ABC") + "]\n```", "closed"),
    ("[" + ", ".join([_obj("A"), _obj("B")] + [_obj("C")] * 5) + ", {\"na", "repeats_one"),
    ("[" + ", ".join(_obj(n) for n in "ABCDBCDBC") + ", {", "cycles"),
    ("[" + ", ".join(_obj(n) for n in "ABCDEFGH") + ", {\"name\": \"I", "runs_on"),
    ("[" + ", ".join(_obj(n) for n in "AB") + ", {", "runs_on"),  # too short to call a loop
    ("I could not find any.", "no_list"),
    ("[{\"name\": \"A\"", "no_list"),
    ("", "no_list"),
    (None, "no_list"),
    ("[" + ", ".join(_obj(n) for n in "AB") + "] and [1]", "rejected"),  # two lists: the reference rule fails
    ('[{"name": "A [draft]", "x": "1"}]', "rejected"),
    ('[{"name": "A", "x": 380-846-4007}]\n```', "malformed"),
    ('```json\n[{"name": "A", "x": "1"}, {"name": "B", "x": Walter"}\n]\n```', "malformed"),
])
def test_ending(prediction, expected):
    from shadowkv_lab.tasks.text2json_score import ENDINGS, ending

    assert ending(prediction) == expected and expected in ENDINGS


def test_ending_same_name_other_values_is_a_cycle_not_a_repeat():
    from shadowkv_lab.tasks.text2json_score import ending

    pred = "[" + ", ".join(_obj(n, v) for n, v in zip("ABABABAB", "12345678")) + ", {"
    assert ending(pred) == "cycles"


@given(st.text(max_size=300))
def test_ending_never_raises(text):
    from shadowkv_lab.tasks.text2json_score import ENDINGS, ending

    assert ending(text) in ENDINGS
