"""MultiNeedle: NeedleBench-V2 parallel multi-retrieval (11 needles at depths 0, 10, ..., 100).

Faithful to OpenCompass `needlebench_v2/parallel.py`:
  * needles: the first 11 English entries of the needle JSONL with unique arg1, arg2 (and pair);
    each sample's seed shuffles the needle order and the haystack documents;
  * needle i goes to depth depths[i], inserted at int(L * depth / 100) + (length of the needles
    already inserted), each wrapped as "\\n" + needle + "\\n"; L and the offsets are in tokens when the
    tokenizer can decode (as the reference, which works on tiktoken ids), else in characters;
  * one prompt asks all questions at once (joined with the reference's "、" separator) with the
    reference's answer-format hint; score = per depth 100 if arg2 is a case-sensitive substring.
Differences, on purpose: the haystack is cut at a sentence boundary (never mid-sentence) and the
*whole prompt* is fitted to `tokens - buffer` in the evaluated model's tokenizer (the reference
counts the haystack with the gpt-4 tokenizer); buffer defaults to 3000 at 128k, proportionally less
at shorter lengths. Offline: a generated haystack and synthetic needles (invented subject/answer pairs).
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Sequence

from .base import DEFAULT_N, Sample, Task, looks_like_records
from .haystack import resolve_haystack
from .jsonl import read_jsonl
from .text2json_domains import FEMALE, LAST, MALE
from .tokens import UnitPool, as_counter, fit_to_length

DEPTHS = tuple(range(0, 101, 10))
REFERENCE_LENGTH, REFERENCE_BUFFER = 128_000, 3000

PROMPT = (
    "This is a test of long-text capability. You need to first read the long document below, and then answer "
    "the final questions one by one based on the information in the document.\n"
    "The content of the long document is as follows\n\n<Document>\n{context}\n</Document>\n\n"
    "Based on the information in the document, now please answer: {question}\n"
)


# -- needles ---------------------------------------------------------------------------------------

def read_needles(path) -> list[dict]:
    """NeedleBench needle pool (JSONL: needle, retrieval_question, gold_standard_answer, arg1, arg2, type, language)."""
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                row = json.loads(line)
            except ValueError:
                continue  # the reference skips malformed lines too
            if isinstance(row, dict) and all(isinstance(row.get(k), str) for k in ("needle", "retrieval_question", "arg2")):
                out.append(row)
    return out


def select_needles(pool: Sequence[dict], n: int = len(DEPTHS), language: str = "English") -> list[dict]:
    """First n entries in `language` with unique arg1, unique arg2 and unique (arg1, arg2)."""
    seen1, seen2, out = set(), set(), []
    for row in pool:
        if row.get("language") != language:
            continue
        a1, a2 = row.get("arg1", ""), row.get("arg2", "")
        if a1 in seen1 or a2 in seen2:
            continue
        seen1.add(a1)
        seen2.add(a2)
        out.append(row)
        if len(out) == n:
            return out
    raise ValueError(f"only {len(out)} {language} needles with unique arg1/arg2; need {n}")


_THINGS = ("favourite childhood toy", "secret recipe", "lucky charm", "hidden treasure", "first sailboat", "pet tortoise",
           "prized violin", "lost diary", "signature dish", "secret garden", "family motto", "racing pigeon",
           "winter cabin", "oldest telescope", "travel companion", "rare orchid")
_SYL = ("bel", "dra", "quor", "vint", "zen", "mar", "tol", "kri", "sa", "nox", "fen", "ul", "ra", "thi", "gor",
        "lia", "vex", "or", "mo", "cas", "pel", "dun", "syl", "tav")
_NOUNS = ("Crystal", "Lantern", "Compass", "Sonata", "Orchid", "Falcon", "Comet", "Anchor", "Violet", "Harbor",
          "Meadow", "Beacon")


def _invented(rng: random.Random) -> str:
    return "".join(rng.choice(_SYL) for _ in range(rng.randint(2, 3))).capitalize()


def synthetic_needles(rng: random.Random, n: int = len(DEPTHS)) -> list[dict]:
    """Invented subject/answer facts in NeedleBench's schema; answers are invented proper nouns."""
    out, seen1, seen2 = [], set(), set()
    while len(out) < n:
        person = f"{rng.choice(FEMALE + MALE)} {rng.choice([s for s in LAST if chr(8217) not in s])}"
        thing = rng.choice(_THINGS)
        arg1, arg2 = f"{thing} of {person}", f"{_invented(rng)} {rng.choice(_NOUNS)}"
        if arg1 in seen1 or arg2 in seen2:
            continue
        seen1.add(arg1)
        seen2.add(arg2)
        out.append({
            "needle": f"The {arg1} is {arg2}.",
            "retrieval_question": f"What is the {arg1}? Please answer in the format of 'The {arg1} is ______.'",
            "gold_standard_answer": arg2, "arg1": arg1, "arg2": arg2, "type": "synthetic", "language": "English",
        })
    return out


def build_question(needles: Sequence[dict]) -> str:
    """The reference's combined question: questions and answer formats joined with '、'."""
    qs, fmts = [], []
    for nd in needles:
        q = nd["retrieval_question"]
        qs.append(q.split("?")[0] + "?")
        parts = q.split("'")
        fmts.append(parts[1].split(".")[0] if len(parts) > 1 else "")
    question = "、".join(qs)
    if all(fmts):
        question += "Please answer in the format of '" + "、".join(fmts) + "'"
    return question


def insert_needles(seq, needles: Sequence, depths: Sequence[int]):
    """Insert needle i at int(len(seq) * depths[i] / 100) + cumulative inserted length (seq: str or list)."""
    points = [int(len(seq) * d / 100) for d in depths]
    placed, offset = [], 0
    for needle, p in zip(needles, points):
        at = min(p + offset, len(seq))
        seq = seq[:at] + needle + seq[at:]
        placed.append(at)
        offset += len(needle)
    return seq, placed


# -- generation -------------------------------------------------------------------------------------

def default_buffer(tokens: int) -> int:
    return round(tokens * REFERENCE_BUFFER / REFERENCE_LENGTH)


def generate_sample(seed: int, *, tokens: int = 32768, tokenizer=None, haystack=None, needles: Sequence[dict] | None = None,
                    buffer: int | None = None, depths: Sequence[int] = DEPTHS, tolerance: float = 0.05,
                    sample_id: str | None = None) -> Sample:
    counter = as_counter(tokenizer)
    rng = random.Random(seed)
    depths = list(depths)
    if needles is None:
        chosen = synthetic_needles(random.Random(f"needles:{seed}"), len(depths))
        needle_source = "synthetic"
    else:
        chosen = list(needles)
        if len(chosen) != len(depths):
            raise ValueError(f"{len(chosen)} needles for {len(depths)} depths")
        needle_source = "file"
    units, finite, hay_source = resolve_haystack(haystack, rng)
    chosen = list(chosen)
    rng.shuffle(chosen)  # the seed shuffles needle order, as the reference does per repeat
    question = build_question(chosen)
    wrapped = ["\n" + nd["needle"] + "\n" for nd in chosen]
    use_tokens = counter.can_decode
    needle_ids = [counter.encode(w) for w in wrapped] if use_tokens else None
    info: dict = {}

    def render(us: list[str]) -> str:
        context = "".join(us)
        if use_tokens:
            ids, placed = insert_needles(counter.encode(context), needle_ids, depths)
            info.update(length=len(ids) - sum(map(len, needle_ids)), points=placed)
            context = counter.decode(ids)
        else:
            context, placed = insert_needles(context, wrapped, depths)
            info.update(length=len(context) - sum(map(len, wrapped)), points=placed)
        return PROMPT.format(context=context, question=question)

    buffer = default_buffer(tokens) if buffer is None else buffer
    target = tokens - buffer
    pool = UnitPool(units, separator_chars=0, cycle=finite)
    fit = fit_to_length(render, pool, target, counter, tol=tolerance)
    render(pool.units[:fit.n_units])  # refresh `info` for the returned text
    gold = [{"depth": d, "arg1": nd.get("arg1", ""), "arg2": nd["arg2"], "question": nd["retrieval_question"]}
            for d, nd in zip(depths, chosen)]
    meta = {
        "source": hay_source, "needle_source": needle_source, "seed": seed, "depths": depths,
        "insertion_unit": "tokens" if use_tokens else "chars", "haystack_length": info["length"],
        "insertion_points": info["points"], "needles": wrapped, "buffer": buffer, "n_tokens": fit.n_tokens,
        "target_tokens": target, "length_unit": counter.unit, "haystack_repeated": pool.repeated,
    }
    return Sample(id=sample_id or f"multineedle-{tokens}-s{seed}", prompt=fit.text, gold=gold, meta=meta)


def generate(n: int, *, tokens: int = 32768, seed: int = 0, tokenizer=None, haystack=None, needles=None,
             language: str = "English", **kw) -> list[Sample]:
    """n prompts, sample i with seed seed+i (the reference uses seeds 0..99). needles: a NeedleBench
    JSONL path or a list of rows (the first 11 unique English ones are used); None -> synthetic."""
    depths = kw.pop("depths", DEPTHS)
    if isinstance(needles, (str, Path)):
        needles = select_needles(read_needles(needles), len(depths), language)
    elif needles is not None:
        needles = select_needles(needles, len(depths), language)
    counter = as_counter(tokenizer)
    return [generate_sample(seed + i, tokens=tokens, tokenizer=counter, haystack=haystack, needles=needles, depths=depths,
                            sample_id=f"multineedle-{tokens}-s{seed + i}", **kw) for i in range(n)]


# -- scoring ----------------------------------------------------------------------------------------

def score(prediction: str, gold) -> dict[str, float]:
    """Per depth 100 if arg2 is a case-sensitive substring of the prediction; score = mean over depths."""
    try:
        if isinstance(gold, str):
            gold = json.loads(gold)
        pred = prediction if isinstance(prediction, str) else ""
        per_depth = {f"depth_{int(g['depth'])}": 100.0 if str(g["arg2"]) in pred else 0.0 for g in gold}
        if not per_depth:
            return {"score": math.nan}
        return {"score": sum(per_depth.values()) / len(per_depth), **per_depth}
    except Exception:  # noqa: BLE001 - malformed gold: invalid sample, excluded from means
        return {"score": math.nan}


class MultiNeedleTask(Task):
    name = "multineedle"
    max_new_tokens = 1024
    primary_metric = "score"

    def load(self, path=None, *, n=None, tokens=None, seed=0, tokenizer=None, **kw) -> list[Sample]:
        """path: None (generated haystack), a haystack file (.txt or {title,text} JSONL), or our records JSONL.
        kw: needles (NeedleBench JSONL path), buffer, depths, language, tolerance."""
        if path is not None and looks_like_records(path):
            return self.read_records(path, n)
        return generate(DEFAULT_N if n is None else n, tokens=tokens or 32768, seed=seed, tokenizer=tokenizer,
                        haystack=path, **kw)

    def score(self, prediction: str, gold) -> dict[str, float]:
        return score(prediction, gold)
