"""RULER-style synthetic tasks (the "easy" contrast): NIAH variants, variable tracking, frequent words.

Templates follow RULER (NVIDIA, arXiv 2404.06654) closely, answer prefixes left out because the
prompt is a single user message that goes through the chat template:
  * niah_single: one needle "One of the special magic numbers for {key} is: {value}."; ask its value.
  * niah_multikey: 4 keys, one asked (3 distractor needles).
  * niah_multivalue: one key with 4 values; all asked.
  * niah_multiquery: 4 keys, all asked at once.
  * vt: a chain "VAR A = 12345. VAR B = VAR A. ..." hidden in the haystack; name every variable
    that holds the value.
  * fwe: coded words drawn from a Zipf law (alpha 2); name the three most frequent.
Needles go between sentences at seeded random depths; the haystack is RULER's noise, generated
prose, or any text file (`haystack=`). Score: share of gold strings found in the prediction
(case-insensitive), x100, as RULER's string_match_all.
"""

from __future__ import annotations

import math
import random
import string
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

from .base import DEFAULT_N, Sample, Task, looks_like_records
from .haystack import resolve_haystack
from .tokens import UnitPool, as_counter, fit_to_length

_ADJ = ("fearless", "quiet", "brave", "gentle", "tall", "ancient", "clever", "sleepy", "bright", "curious", "hollow",
        "swift", "rusty", "silent", "lucky", "mellow", "nervous", "proud", "rapid", "shiny", "tender", "vivid",
        "wild", "zealous", "bitter", "calm", "damp", "eager", "faint", "giant")
_NOUN = ("quality", "cap", "river", "lantern", "garden", "pencil", "harbor", "meadow", "violin", "compass", "ladder",
         "blanket", "teapot", "castle", "feather", "glacier", "hammer", "island", "jacket", "kettle", "mirror",
         "needle", "orchard", "pillow", "quarry", "saddle", "tunnel", "umbrella", "wagon", "anchor")

NIAH_TEMPLATE = (
    "Some special magic {type_v} are hidden within the following text. Make sure to memorize it. "
    "I will quiz you about the {type_v} afterwards.\n{context}\n"
    "What {be} the special magic {type_v_q} for {query} mentioned in the provided text?"
)
NIAH_NEEDLE = "One of the special magic {type_v1} for {key} is: {value}."
VT_TEMPLATE = (
    "Memorize and track the chain(s) of variable assignment hidden in the following text.\n\n{context}\n"
    "Question: Find all variables that are assigned the value {query} in the text above."
)
FWE_TEMPLATE = (
    "Read the following coded text and track the frequency of each coded word. Find the three most frequently "
    "appeared coded words. {context}\nQuestion: Do not provide any explanation. Please ignore the dots '....'. "
    "What are the three most frequently appeared words in the above coded text?"
)


@dataclass(frozen=True)
class NiahSpec:
    keys: int  # needles with distinct keys (all inserted)
    values: int  # values per key
    queries: int  # keys asked about (the first `queries` keys)
    haystack: str = "filler"  # default haystack: "noise" | "filler"


NIAH = {
    "ruler_niah_single": NiahSpec(1, 1, 1, "noise"),
    "ruler_niah_multikey": NiahSpec(4, 1, 1),
    "ruler_niah_multivalue": NiahSpec(1, 4, 1),
    "ruler_niah_multiquery": NiahSpec(4, 1, 4),
}


# -- small generators ------------------------------------------------------------------------------

def _word_key(rng: random.Random) -> str:
    return f"{rng.choice(_ADJ)}-{rng.choice(_NOUN)}"


def _value(rng: random.Random, kind: str) -> str:
    if kind == "numbers":
        return str(rng.randrange(1_000_000, 10_000_000))
    if kind == "uuids":
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))
    if kind == "words":
        return _word_key(rng)
    raise ValueError(f"unknown value type {kind!r}; use numbers, uuids or words")


def _unique(rng, make, n, taken=()):
    out, seen = [], set(taken)
    while len(out) < n:
        v = make(rng)
        if v not in seen:
            seen.add(v)
            out.append(v)
    return out


def _insert_at_depths(units: list[str], inserts: Sequence[str], depths: Sequence[float]) -> list[str]:
    """Insert each sentence (with a leading space) between units at int(len * depth / 100)."""
    out = list(units)
    # insert from the deepest first so earlier indices stay valid; stable for equal depths
    order = sorted(range(len(inserts)), key=lambda i: depths[i], reverse=True)
    n = len(units)
    for i in order:
        out.insert(int(n * depths[i] / 100), " " + inserts[i])
    return out


def _join(units: list[str]) -> str:
    # Units normally carry their leading whitespace; the first haystack unit and units right after
    # an inserted needle may not, so add a space where two sentences would otherwise touch.
    if not units:
        return ""
    return (units[0] + "".join(u if u[:1].isspace() else " " + u for u in units[1:])).strip()


def _fit(render, units, finite, tokens, counter, tolerance):
    pool = UnitPool(units, separator_chars=0, cycle=finite)
    fit = fit_to_length(render, pool, tokens, counter, tol=tolerance)
    return fit, pool


# -- generators ------------------------------------------------------------------------------------

def generate_niah(seed: int, spec: NiahSpec, *, tokens: int, tokenizer=None, haystack=None, key_type: str = "words",
                  value_type: str = "numbers", tolerance: float = 0.05, name: str = "ruler_niah") -> Sample:
    rng = random.Random(f"{name}:{seed}")
    counter = as_counter(tokenizer)
    make_key = _word_key if key_type == "words" else (lambda r: _value(r, key_type))
    keys = _unique(rng, make_key, spec.keys)
    values = {k: _unique(rng, lambda r: _value(r, value_type), spec.values) for k in keys}
    needles = [(k, v) for k in keys for v in values[k]]
    rng.shuffle(needles)
    type_v = {"numbers": "numbers", "uuids": "uuids", "words": "words"}[value_type]
    type_v1 = type_v  # RULER writes the plural in the needle too ("One of the special magic numbers for ...")
    sentences = [NIAH_NEEDLE.format(type_v1=type_v1, key=k, value=v) for k, v in needles]
    depths = [rng.uniform(0, 100) for _ in sentences]
    queried = keys[: spec.queries]
    query = queried[0] if len(queried) == 1 else ", ".join(queried[:-1]) + " and " + queried[-1]
    plural = spec.values > 1 or spec.queries > 1
    prompt_kw = dict(type_v=type_v, type_v_q=type_v if plural else type_v.rstrip("s"), be="are" if plural else "is", query=query)
    units, finite, source = resolve_haystack(haystack or spec.haystack, random.Random(f"{name}:{seed}:haystack"))

    def render(us):
        return NIAH_TEMPLATE.format(context=_join(_insert_at_depths(us, sentences, depths)), **prompt_kw)

    fit, pool = _fit(render, units, finite, tokens, counter, tolerance)
    gold = [v for k in queried for v in values[k]]
    meta = {"source": source, "seed": seed, "keys": keys, "queried": queried, "depths": [round(d, 2) for d in depths],
            "n_tokens": fit.n_tokens, "target_tokens": tokens, "length_unit": counter.unit,
            "haystack_repeated": pool.repeated}
    return Sample(id=f"{name}-{tokens}-s{seed}", prompt=fit.text, gold=gold, meta=meta)


def generate_vt(seed: int, *, tokens: int, tokenizer=None, haystack=None, num_chains: int = 1, num_hops: int = 4,
                tolerance: float = 0.05, name: str = "ruler_vt") -> Sample:
    rng = random.Random(f"{name}:{seed}")
    counter = as_counter(tokenizer)
    names = _unique(rng, lambda r: "".join(r.choice(string.ascii_uppercase) for _ in range(5)), num_chains * (num_hops + 1))
    chain_values = _unique(rng, lambda r: str(r.randrange(10000, 100000)), num_chains)
    sentences, depths, chains = [], [], []
    for c in range(num_chains):
        vs = names[c * (num_hops + 1):(c + 1) * (num_hops + 1)]
        chains.append(vs)
        stmts = [f"VAR {vs[0]} = {chain_values[c]}."] + [f"VAR {vs[i]} = VAR {vs[i - 1]}." for i in range(1, len(vs))]
        ds = sorted(rng.uniform(0, 100) for _ in stmts)  # a chain reads forwards through the text
        sentences += stmts
        depths += ds
    units, finite, source = resolve_haystack(haystack or "noise", random.Random(f"{name}:{seed}:haystack"))

    def render(us):
        return VT_TEMPLATE.format(context=_join(_insert_at_depths(us, sentences, depths)), query=chain_values[0])

    fit, pool = _fit(render, units, finite, tokens, counter, tolerance)
    meta = {"source": source, "seed": seed, "chains": chains, "values": chain_values, "n_tokens": fit.n_tokens,
            "target_tokens": tokens, "length_unit": counter.unit, "haystack_repeated": pool.repeated}
    return Sample(id=f"{name}-{tokens}-s{seed}", prompt=fit.text, gold=list(chains[0]), meta=meta)


def _zipf_words(rng: random.Random, vocab: list[str], alpha: float):
    weights = [1.0 / (r + 1) ** alpha for r in range(len(vocab))]
    i = 0
    while True:
        i += 1
        w = rng.choices(vocab, weights)[0]
        # RULER asks the model to ignore '....' separators; one every ~10 words
        yield (" " + w) if i % 10 else (" " + w + " ....")


def generate_fwe(seed: int, *, tokens: int, tokenizer=None, vocab_size: int = 600, alpha: float = 2.0,
                 tolerance: float = 0.05, name: str = "ruler_fwe") -> Sample:
    rng = random.Random(f"{name}:{seed}")
    counter = as_counter(tokenizer)
    vocab = _unique(rng, lambda r: "".join(r.choice(string.ascii_lowercase) for _ in range(r.randint(3, 7))), vocab_size)
    words_it = _zipf_words(random.Random(f"{name}:{seed}:words"), vocab, alpha)

    def render(us):
        return FWE_TEMPLATE.format(context=_join(us))

    fit, pool = _fit(render, words_it, False, tokens, counter, tolerance)
    units = list(pool.units[:fit.n_units])
    counts = Counter(u.split()[0] for u in units)
    top3 = [w for w, _ in counts.most_common(3)]
    # The top three must be strictly more frequent than every other word, or the gold is ambiguous.
    # Turn the last occurrence of the strongest rival into the third word until that holds; with
    # alpha=2 this is rarely needed and changes the length by a few characters at most.
    while len(counts) > 3:
        rival = max((w for w in counts if w not in top3), key=counts.get)
        if counts[top3[2]] > counts[rival]:
            break
        i = max(i for i, u in enumerate(units) if u.split()[0] == rival)
        units[i] = units[i].replace(rival, top3[2], 1)
        counts[rival] -= 1
        counts[top3[2]] += 1
    text = render(units)
    gold = list(top3)
    meta = {"seed": seed, "vocab_size": vocab_size, "alpha": alpha, "n_words": len(units),
            "top_counts": [counts[w] for w in gold], "n_tokens": counter.count(text), "target_tokens": tokens,
            "length_unit": counter.unit}
    return Sample(id=f"{name}-{tokens}-s{seed}", prompt=text, gold=gold, meta=meta)


# -- scoring ---------------------------------------------------------------------------------------

def score(prediction: str, gold) -> float:
    """RULER string_match_all: 100 * share of gold strings found in the prediction, case-insensitive."""
    try:
        if isinstance(gold, str):
            gold = [gold]
        gold = [str(g) for g in gold]
        if not gold:
            return math.nan
        pred = (prediction if isinstance(prediction, str) else "").lower()
        return 100.0 * sum(g.lower() in pred for g in gold) / len(gold)
    except Exception:  # noqa: BLE001
        return math.nan


class RulerTask(Task):
    """One RULER-style task; `variant` is its registry name."""

    primary_metric = "score"

    def __init__(self, variant: str):
        if variant not in NIAH and variant not in ("ruler_vt", "ruler_fwe"):
            raise ValueError(f"unknown RULER variant {variant!r}")
        self.name = variant
        # RULER's caps: NIAH 128, VT 30 and FWE 50 (rounded up here: chat models add a few words)
        self.max_new_tokens = 128 if variant in NIAH else 64

    def generate_one(self, seed: int, tokens: int, tokenizer=None, haystack=None, **kw) -> Sample:
        if self.name in NIAH:
            return generate_niah(seed, NIAH[self.name], tokens=tokens, tokenizer=tokenizer, haystack=haystack, name=self.name, **kw)
        if self.name == "ruler_vt":
            return generate_vt(seed, tokens=tokens, tokenizer=tokenizer, haystack=haystack, name=self.name, **kw)
        return generate_fwe(seed, tokens=tokens, tokenizer=tokenizer, name=self.name, **kw)

    def load(self, path=None, *, n=None, tokens=None, seed=0, tokenizer=None, **kw) -> list[Sample]:
        """path: None (noise / generated prose), a haystack text file, or our records JSONL.
        kw: key_type / value_type (NIAH: words, numbers, uuids), num_chains / num_hops (VT),
        vocab_size / alpha (FWE), tolerance."""
        if path is not None and looks_like_records(path):
            return self.read_records(path, n)
        if path is not None and self.name == "ruler_fwe":
            raise ValueError("ruler_fwe generates its own coded words: it takes no haystack path")
        counter = as_counter(tokenizer)
        return [self.generate_one(seed + i, tokens or 4096, counter, haystack=path, **kw)
                for i in range(DEFAULT_N if n is None else n)]

    def score(self, prediction: str, gold) -> dict[str, float]:
        return {"score": score(prediction, gold)}
