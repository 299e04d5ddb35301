"""Text2JSON scorer: the reference rules, made robust, plus a lenient variant.

Reference semantics (docs/tasks.md, "Text2JSON"), implemented exactly:
1. U+2019 (curly apostrophe) is folded to ' in names and values.
2. A gold sample with duplicate names is invalid: its score is NaN and `aggregate` leaves it out.
3. The prediction must contain exactly one '[' and one ']', '[' first; the span between them
   (inclusive) must json.loads to a list. Otherwise the sample scores 0 (and counts).
4. union = len(gold). Each predicted element: no string "name", or a name not among the remaining
   gold names -> union += 1. Else 1 - 0.5 per gold key missing/null - 0.25 per gold key whose value
   differs; extra keys are ignored; the gold entry is consumed (a duplicate prediction is an extra).
5. Sample score = 100 * sum / union.

Robustness (where the reference crashes): values that are not strings are compared through a
canonical string (numbers via str(), so 2019 == "2019"; booleans, lists and objects via JSON);
list elements that are not objects count as extras; any malformed input scores 0, never raises.
Per-object scores are clamped at 0 so a gold with more than two attribute keys cannot go negative.

`score_lenient` scores the first parseable JSON list anywhere in the output (two lists, or brackets
inside strings, get 0 from the strict rule but are visible here).

`score_salvaged` is a diagnostic, never the metric: the complete elements of the first list, closed or cut off by the
token cap, with exact repeats dropped. Small models often list the answer and then repeat it until the cap, which
scores 0 under both rules above; this column shows what the extraction itself was worth.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

APOS = "\u2019"
NAN = float("nan")


def _norm(s: str) -> str:
    return s.replace(APOS, "'")


def canonical(value: Any) -> str | None:
    """String form used for comparison; None stays None (a null value)."""
    if value is None:
        return None
    if isinstance(value, str):
        return _norm(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _norm(str(value))  # the reference compares numbers through str()
    try:
        return _norm(json.dumps(value, ensure_ascii=False, sort_keys=True))
    except (TypeError, ValueError):
        return _norm(str(value))


def parse_gold(gold) -> list[dict] | None:
    """Gold as a list of objects with unique string names, or None when the sample is invalid."""
    if isinstance(gold, (str, bytes)):
        try:
            gold = json.loads(gold)
        except (ValueError, RecursionError):
            return None
    if not isinstance(gold, list):
        return None
    seen = set()
    for g in gold:
        if not isinstance(g, dict) or not isinstance(g.get("name"), str):
            return None
        key = _norm(g["name"])
        if key in seen:
            return None  # duplicate names: the reference skips such samples
        seen.add(key)
    return gold


def _pair(predicted: list, gold: list[dict]):
    """Step 4's greedy name matching: yields (element, its gold entry or None) per predicted element. A gold entry is
    consumed by its first match; an element that is not an object with a string name, or whose name is not among
    the remaining gold names, pairs with None (an extra)."""
    remaining = {_norm(g["name"]): g for g in gold}
    for obj in predicted:
        named = isinstance(obj, dict) and isinstance(obj.get("name"), str)
        yield obj, (remaining.pop(_norm(obj["name"]), None) if named else None)


def _value_status(obj: dict, key: str, gold_value) -> str:
    """'missing' (absent or null), 'wrong' or 'right' for one gold key of a matched object."""
    if key not in obj or obj[key] is None:
        return "missing"
    return "wrong" if canonical(obj[key]) != canonical(gold_value) else "right"


_PENALTY = {"missing": 0.5, "wrong": 0.25, "right": 0.0}


def match_objects(predicted: list, gold: list[dict]) -> float:
    """Steps 4-5 of the reference: greedy name matching with per-key penalties, 0..100."""
    union = len(gold)
    total = 0.0
    for obj, g in _pair(predicted, gold):
        if g is None:
            union += 1
            continue
        total += max(1.0 - sum(_PENALTY[_value_status(obj, key, gv)] for key, gv in g.items()), 0.0)
    if union == 0:  # empty gold and empty prediction: nothing to find, nothing wrong
        return 100.0
    return 100.0 * total / union


def extract_strict(prediction: str) -> list | None:
    """The reference bracket rule: exactly one '[' and one ']', in that order, parsing to a list."""
    if prediction.count("[") != 1 or prediction.count("]") != 1:
        return None
    i, j = prediction.index("["), prediction.index("]")
    if i > j:
        return None
    try:
        parsed = json.loads(prediction[i:j + 1])
    except (ValueError, RecursionError):
        return None
    return parsed if isinstance(parsed, list) else None


_OPEN = re.compile(r"\[")


def extract_lenient(prediction: str) -> list | None:
    """First '[' (left to right) at which a complete JSON list can be decoded."""
    dec = json.JSONDecoder()
    for m in _OPEN.finditer(prediction):
        try:
            obj, _ = dec.raw_decode(prediction, m.start())
        except (ValueError, RecursionError):
            continue
        if isinstance(obj, list):
            return obj
    return None


def _scan(prediction: str) -> tuple[list | None, bool]:
    """(every complete element of the first JSON list, in order, repeats kept; whether an element failed to decode
    with a ']' still ahead, i.e. malformed JSON rather than a list cut off by the token cap). The list need not be closed."""
    i = prediction.find("[")
    if i < 0:
        return None, False
    dec, out, pos, n = json.JSONDecoder(), [], i + 1, len(prediction)
    while True:
        while pos < n and prediction[pos] in " \t\r\n,":
            pos += 1
        if pos >= n or prediction[pos] == "]":
            return out, False
        try:
            obj, pos = dec.raw_decode(prediction, pos)
        except (ValueError, RecursionError):
            return out, "]" in prediction[pos:]
        out.append(obj)


def extract_salvaged(prediction: str) -> list | None:
    """Complete elements of the first JSON list, in order, exact repeats dropped; the list need not be closed."""
    elements, _ = _scan(prediction)
    if elements is None:
        return None
    out, seen = [], set()
    for obj in elements:
        key = json.dumps(obj, sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(obj)
    return out


ENDINGS = ("closed", "rejected", "malformed", "repeats_one", "cycles", "runs_on", "no_list")
LOOPS = ("repeats_one", "cycles", "runs_on")  # the endings of an output that ran into the token cap


def ending(prediction: str, tail: int = 4) -> str:
    """Diagnostic: how an output ends, one of ENDINGS. closed: the reference rule parses it; rejected: it does not, but
    a complete list is there (two lists, brackets inside strings); malformed: the list is closed but not valid JSON
    (an unquoted value). Otherwise the first list is unclosed (at the token cap, a loop): repeats_one (its last `tail` elements are one object), cycles (their names
    were all listed before: the list restarted), runs_on (it keeps listing new names), no_list (no complete element)."""
    try:
        if not isinstance(prediction, str):
            return "no_list"
        if extract_strict(prediction) is not None:
            return "closed"
        if extract_lenient(prediction) is not None:
            return "rejected"
        elements, malformed = _scan(prediction)
        if malformed:
            return "malformed"
        elements = elements or []
        if not elements:
            return "no_list"
        keys = [json.dumps(o, sort_keys=True) for o in elements]
        if len(keys) >= tail and len(set(keys[-tail:])) == 1:
            return "repeats_one"

        def name(o):
            return _norm(o["name"]) if isinstance(o, dict) and isinstance(o.get("name"), str) else json.dumps(o)

        names = [name(o) for o in elements]
        if len(names) > tail and set(names[-tail:]) <= set(names[:-tail]):
            return "cycles"
        return "runs_on"
    except Exception:  # noqa: BLE001 - a diagnostic must never take an analysis down
        return "no_list"


def _score(prediction, gold, extract) -> float:
    try:
        g = parse_gold(gold)
        if g is None:
            return NAN
        if not isinstance(prediction, str):
            return 0.0
        predicted = extract(prediction)
        if predicted is None:
            return 0.0
        v = match_objects(predicted, g)
        return v if math.isfinite(v) else 0.0
    except Exception:  # noqa: BLE001 - a scorer must never take an evaluation run down
        return 0.0


def score(prediction: str, gold) -> float:
    """Strict Text2JSON score (reference rule), 0..100, NaN for an invalid gold sample."""
    return _score(prediction, gold, extract_strict)


def score_lenient(prediction: str, gold) -> float:
    """Same matching on the first parseable JSON list anywhere in the output, 0..100 (NaN: invalid gold)."""
    return _score(prediction, gold, extract_lenient)


def score_salvaged(prediction: str, gold) -> float:
    """Diagnostic: same matching on the complete, de-duplicated elements of a possibly unclosed first list."""
    return _score(prediction, gold, extract_salvaged)


def error_breakdown(prediction: str, gold, entities: list[dict] | None = None) -> dict:
    """Diagnostic: where a prediction's points went, on the salvaged elements (so a looping output still counts).

    entities: the sample's meta["entities"] ({name, kind, gold}) of our generator, to tell listed entities of other
    kinds (distractors read and wrongly kept) from names that appear nowhere. Returns counts: gold, found, missed,
    values_right / values_wrong / values_missing (over the asked attributes of found entities), extra_other_kind,
    extra_unknown (names not in the text's entity list; all extras when entities is None), duplicates, not_objects,
    and unclosed (no complete list: the reference rule scores the sample 0). Never raises (an invalid gold: {})."""
    try:
        g = parse_gold(gold)
        if g is None:
            return {}
        out = dict(gold=len(g), found=0, missed=0, values_right=0, values_wrong=0, values_missing=0,
                   extra_other_kind=0, extra_unknown=0, duplicates=0, not_objects=0,
                   unclosed=int(not isinstance(prediction, str) or extract_strict(prediction) is None))
        gold_names = {_norm(o["name"]) for o in g}
        known = {_norm(e["name"]) for e in entities or [] if isinstance(e, dict) and isinstance(e.get("name"), str)}
        salvaged = (extract_salvaged(prediction) if isinstance(prediction, str) else None) or []
        for obj, entry in _pair(salvaged, g):  # the scorer's own matching
            if entry is not None:
                out["found"] += 1
                for key, gv in entry.items():
                    if key != "name":
                        out["values_" + _value_status(obj, key, gv)] += 1
            elif not isinstance(obj, dict):
                out["not_objects"] += 1
            else:
                name = obj.get("name")
                name = _norm(name) if isinstance(name, str) else None
                kind = "duplicates" if name in gold_names else "extra_other_kind" if name in known else "extra_unknown"
                out[kind] += 1
        out["missed"] = out["gold"] - out["found"]
        return out
    except Exception:  # noqa: BLE001 - a diagnostic must never take an analysis down
        return {}
