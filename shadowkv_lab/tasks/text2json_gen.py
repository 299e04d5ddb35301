"""Offline Text2JSON-style generator: a long text about many entities, and an extraction question.

One sample = one domain, one asked entity kind, two asked attributes. The text mixes:
  * gold entities (the asked kind), each introduced with its kind and facts in varied prose;
  * distractor entities of the domain's other kinds, mostly stating the same two attributes;
  * near-duplicate names (a twin of a gold entity, of another kind or of the same kind);
  * cross-mentions ("Unlike A, B weighs 1.2 kg"): a value next to another entity's name;
  * corrections/updates ("the price of X was revised from A to B"): the gold follows the correction;
  * split facts: one asked attribute of some gold entities is stated in a later, separate passage;
  * entity-free filler prose and value-bearing aggregate sentences ("the median weight was ...").
Difficulty: `n_gold` (how many objects the answer holds) and `spread` (how much of the text the gold
passages cover: 1.0 = all of it, 0.1 = one tenth, placed at a random offset), plus `split_rate`.

Lengths: the whole prompt (text + instruction) lands within `tolerance` of `tokens` by adding whole
filler sentences (never a cut): see tokens.fit_to_length. Everything is drawn from
`random.Random` seeded by the sample seed, so a seed reproduces a sample byte for byte.
"""

from __future__ import annotations

import dataclasses
import json
import random
from dataclasses import dataclass, field
from typing import Sequence

from .base import Sample
from .filler import FILLER_STYLES, Filler
from .text2json_domains import DOMAINS, PIN_FORMATS, SPELL_NUMBERS, Domain, article, is_female
from .tokens import LengthError, UnitPool, as_counter, fit_to_length

GENERATOR_VERSION = "t2j-gen-2"  # 2: calibrated defaults (density 1.5/1k, filler 0.8, digits)
DOMAIN_ORDER = ("products", "medical", "organizations", "movies")
# Identifiers have no "typical" or "median" value: never used in aggregate sentences.
_NO_AGGREGATE = frozenset({"website", "license_number", "phone"})
_THINGS = {"products": "products", "medical": "professionals", "organizations": "organizations", "movies": "titles"}

_SPLIT = (
    "Returning to {n}: {pron} {clause}.",
    "One more detail about {n}: {pron} {clause}.",
    "As for {n}, {pron} {clause}.",
    "{N} {clause}, according to a later report.",
    "A follow-up note on {n} adds that {pron} {clause}.",
)
_CORRECTION = (
    "Correction: an earlier section gave the {label} of {n} as {old}; the correct value is {new}.",
    "Update: the {label} of {n} has since been revised from {old} to {new}.",
    "Erratum: for {n}, read {new} instead of {old} as the {label}.",
    "Please note that the {label} listed for {n} was wrong: it is {new}, not {old}.",
)
_CROSS = (
    "{F} is often compared with {e}, {rel} {clause}.",
    "Unlike {f}, {e} {clause}.",
    "Readers interested in {f} may also note that {e} {clause}.",
    "In the same batch as {f}, {e} {clause}.",
)
_AGGREGATE = (
    "Across all {kinds} surveyed, the median {label} was {v}.",
    "A typical {kind} in this group {clause}.",
    "Industry averages put the {label} at around {v}.",
)
_INSTRUCTION = (
    "Task: list every {kind} described in the text above together with its {label1} and {label2}. "
    "Include only {kinds}, not other kinds of {things}. Answer with a JSON list of objects, one per {kind}, "
    'each with exactly the keys "name", "{key1}" and "{key2}". All values are strings copied exactly as '
    "they are written in the text. If the text corrects or updates a value, use the corrected value. "
    "Output only the JSON list."
)
# Optional additions (Text2JSONConfig.ask_each_once / preview_task), off by default. They were tried against the
# 1.5B's 16k loops to the 1024-token cap (repeating one object or restarting the list), which the reference bracket
# rule scores 0; on the same 20 prompts neither lowered the number of outputs at the cap (search 8).
_EACH_ONCE = " List each {kind} exactly once and close the list after the last one."
_PREVIEW = ("Read the text below. After it, you will be asked to list every {kind} it describes together with its "
            "{label1} and {label2}.")


# Named difficulties (Text2JSONConfig knobs), measured with full attention and qwen2.5-coder-1.5b on an H200; the
# searches behind them: benchmarks/text2json_calibration/ (settings.json + README).
# spec (the defaults): every distractor type of the spec; 24.4 at 8k (search 1, g1.5_f0.8).
# easy: no twins, corrections, split facts or cross-mentions, few distractors; 33.2 at 8k (search 2).
EASY = dict(gold_per_1k_tokens=1.0, filler_share=0.9, asked_attribute_rate=0.3, spelled_numbers=False,
            near_duplicate_rate=0.0, correction_rate=0.0, split_rate=0.0, distractor_rate=0.0)
# calibrated: inside the 40-90 band at 8k and 16k: 50.1 (160 samples) and 41.6 (240) (search 11, p1_c1_even).
CALIBRATED = dict(n_gold=6, filler_share=0.98, distractors_per_gold=0.0, asked_attribute_rate=0.3, extra_attributes=(0, 0),
                  aggregate_rate=0.0, spelled_numbers=False, near_duplicate_rate=0.0, correction_rate=0.0, split_rate=0.0,
                  distractor_rate=0.0, filler_style="rich", ask_each_once=True, preview_task=True, placement="even")
# Text2JSONConfig.placement: where the gold passages sit in their window (see the docstring).
PLACEMENTS = ("random", "even")
# Named difficulties for generate(difficulty=...) and `data text2json --set difficulty=NAME`: "spec" = the defaults.
DIFFICULTIES = {"spec": {}, "easy": EASY, "calibrated": CALIBRATED}


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


@dataclass
class Text2JSONConfig:
    """Knobs of the generator (docs/tasks.md, "Text2JSON"). The defaults are the `spec` difficulty: the hardest
    setting that keeps every distractor type of the task's description; DIFFICULTIES names the other two, and
    benchmarks/text2json_calibration/ records how all three were measured.

    tokens: target prompt length (whole user message) in the tokenizer's tokens (or the fallback unit).
    n_gold: gold entities (objects in the answer); None -> gold_per_1k_tokens * tokens / 1000,
        clamped to [min_gold, max_gold] (40 keeps the answer under ~1k tokens, like the paper's 905).
    spread: share of the text (in passages) over which the gold passages are placed, in (0, 1].
    placement: how the gold passages sit in that window: "random" (anywhere, so they may cluster and leave a long
        gold-free stretch before the question) or "even" (the window cut into n_gold equal strata, one gold passage
        at a random place in each, so the last one lies in the window's final 1/n_gold).
    split_rate: share of gold entities whose second asked attribute sits in a separate later passage.
    filler_share: target share of the length that is entity-free filler prose; the rest is entity
        passages, so this sets how many distractor entities there are (tens to hundreds).
    distractor_rate: chance per entity of one cross-mention sentence (its value next to another name).
    near_duplicate_rate: chance per gold entity of a twin with a near-identical name (60% of twins
        are another kind, i.e. distractors; 40% are the same kind, i.e. extra gold).
    correction_rate: chance per entity of a correction/update of one attribute (the gold follows it).
    aggregate_rate: chance per filler sentence of an entity-free sentence carrying an attribute value.
    asked_attribute_rate: chance that a distractor entity states each of the two asked attributes.
    distractors_per_gold: floor on the distractor entities, int(distractors_per_gold * n_gold) + 2, whatever the
        filler share (small models list most other-kind entities they read, so this ratio sets their extras).
    extra_attributes: (min, max) other attributes stated per entity.
    domain / kind / attributes: fix the domain, asked kind or the two asked attribute keys.
    filler_style: "templates" (the small grammar, repetitive at 16k+) or "rich" (a grammar several times larger, whose
        text rarely repeats a phrase): see tasks.filler.Filler.
    ask_each_once: end the instruction with "List each <kind> exactly once and close the list after the last one."
    preview_task: also state the task, briefly, before the text (the full instruction still follows the text).
    uniform_formats: one surface format per attribute within a sample (every price "$1,299", never also "949 dollars");
        values and every other choice of the sample stay the same. Off: formats vary value by value.
    spelled_numbers: allow small numbers in words ("nineteen years"); False writes every number in digits (the gold
        copies the text verbatim either way, so words only test whether a model copies instead of normalising).
    tolerance: relative length tolerance.
    """

    tokens: int = 16384
    n_gold: int | None = None
    gold_per_1k_tokens: float = 1.5
    min_gold: int = 3
    max_gold: int = 40
    spread: float = 1.0
    placement: str = "random"
    split_rate: float = 0.15
    filler_share: float = 0.8
    distractor_rate: float = 0.25
    near_duplicate_rate: float = 0.1
    correction_rate: float = 0.05
    aggregate_rate: float = 0.04
    asked_attribute_rate: float = 0.8
    distractors_per_gold: float = 0.5
    extra_attributes: tuple[int, int] = (1, 3)
    domain: str | None = None
    kind: str | None = None
    attributes: tuple[str, str] | None = None
    spelled_numbers: bool = False
    filler_style: str = "templates"
    ask_each_once: bool = False
    preview_task: bool = False
    uniform_formats: bool = False
    tolerance: float = 0.05

    def __post_init__(self):
        if not isinstance(self.tokens, int) or self.tokens < 256:
            raise ValueError(f"tokens must be an int >= 256, got {self.tokens!r}")
        if self.n_gold is not None and (not isinstance(self.n_gold, int) or self.n_gold < 1):
            raise ValueError(f"n_gold must be None or a positive int, got {self.n_gold!r}")
        if not 1 <= self.min_gold <= self.max_gold:
            raise ValueError(f"need 1 <= min_gold <= max_gold, got {self.min_gold}, {self.max_gold}")
        if not 0 < self.spread <= 1:
            raise ValueError(f"spread must be in (0, 1], got {self.spread}")
        if self.placement not in PLACEMENTS:
            raise ValueError(f"placement must be one of {PLACEMENTS}, got {self.placement!r}")
        for name in ("split_rate", "distractor_rate", "near_duplicate_rate", "correction_rate", "aggregate_rate",
                     "asked_attribute_rate"):
            v = getattr(self, name)
            if not 0 <= v <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {v}")
        if not (isinstance(self.distractors_per_gold, (int, float)) and 0 <= self.distractors_per_gold <= 10):
            raise ValueError(f"distractors_per_gold must be a number in [0, 10], got {self.distractors_per_gold!r}")
        if not 0 <= self.filler_share < 1:
            raise ValueError(f"filler_share must be in [0, 1), got {self.filler_share}")
        self.extra_attributes = tuple(self.extra_attributes)
        lo, hi = self.extra_attributes
        if not 0 <= lo <= hi:
            raise ValueError(f"extra_attributes must be (min, max) with 0 <= min <= max, got {self.extra_attributes}")
        for name in ("spelled_numbers", "ask_each_once", "preview_task", "uniform_formats"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.filler_style not in FILLER_STYLES:
            raise ValueError(f"filler_style must be one of {FILLER_STYLES}, got {self.filler_style!r}")
        if not 0 < self.tolerance < 0.5:
            raise ValueError(f"tolerance must be in (0, 0.5), got {self.tolerance}")
        if self.domain is not None and self.domain not in DOMAINS:
            raise ValueError(f"unknown domain {self.domain!r}; known: {sorted(DOMAINS)}")
        if self.kind is not None:
            doms = [self.domain] if self.domain else list(DOMAINS)
            if not any(self.kind in [k.singular for k in DOMAINS[d].kinds] for d in doms):
                raise ValueError(f"kind {self.kind!r} not found in domain(s) {doms}")
        if self.attributes is not None:
            self.attributes = tuple(self.attributes)
            if len(self.attributes) != 2 or self.attributes[0] == self.attributes[1]:
                raise ValueError(f"attributes must be two distinct keys, got {self.attributes!r}")

    def gold_count(self) -> int:
        if self.n_gold is not None:
            return self.n_gold
        return max(self.min_gold, min(self.max_gold, round(self.gold_per_1k_tokens * self.tokens / 1000)))


@dataclass
class _Entity:
    name: str
    kind: str
    gold: bool
    female: bool
    stated: dict = field(default_factory=dict)  # attribute -> value as first stated
    final: dict = field(default_factory=dict)  # attribute -> value after corrections
    corrected: set = field(default_factory=set)


@dataclass
class _Block:
    text: str
    gold: bool  # placed inside the gold window
    after: int | None = None  # index of a block this one must follow
    entity: str | None = None
    role: str = "profile"


class _Builder:
    """Builds one sample's entities and passages; `render` arranges them with k filler sentences."""

    def __init__(self, seed: str, domain: Domain, cfg: Text2JSONConfig):
        self.seed, self.d, self.cfg = seed, domain, cfg
        self.rng = random.Random(f"{seed}:content")
        self.names: set[str] = set()
        self.entities: list[_Entity] = []
        self.blocks: list[_Block] = []
        self.corrections: list[dict] = []
        # (first block, end block, entity, is_twin) per distractor, in order of creation
        self._groups: list[tuple[int, int, _Entity, bool]] = []
        self.n_twins = 0
        r = self.rng
        kinds = [k.singular for k in domain.kinds]
        self.kind = cfg.kind if cfg.kind in kinds else r.choice(kinds)
        self.other_kinds = [k for k in kinds if k != self.kind]
        if cfg.attributes is not None:
            for a in cfg.attributes:
                domain.attribute(a)  # KeyError early if unknown
            self.asked = tuple(cfg.attributes)
        else:
            self.asked = tuple(r.sample([a.key for a in domain.attributes], 2))

    # -- names and entities ---------------------------------------------------------------------
    def _register(self, name: str) -> bool:
        key = name.replace("\u2019", "'").casefold()
        if key in self.names:
            return False
        self.names.add(key)
        return True

    def _fresh_name(self, kind: str) -> str:
        for _ in range(1000):
            name = self.d.make_name(self.rng, kind)
            if self._register(name):
                return name
        raise RuntimeError("name space exhausted; lower the number of entities")

    def _twin_name(self, of: str, kind: str) -> str | None:
        for _ in range(20):
            name = self.d.near_duplicate(self.rng, of, kind)
            if name != of and self._register(name):
                return name
        return None

    def _values(self, e: _Entity, keys: Sequence[str]) -> None:
        for k in keys:
            v = self.d.attribute(k).value(self.rng, e.kind, e.name)
            e.stated[k] = e.final[k] = v

    def _new_entity(self, kind: str, gold: bool, name: str | None = None) -> _Entity:
        r, cfg = self.rng, self.cfg
        name = name or self._fresh_name(kind)
        e = _Entity(name=name, kind=kind, gold=gold, female=self.d.person and is_female(name))
        keys = [k for k in self.asked if gold or r.random() < cfg.asked_attribute_rate]
        others = [a.key for a in self.d.attributes if a.key not in self.asked]
        lo, hi = cfg.extra_attributes
        keys += r.sample(others, min(len(others), r.randint(lo, hi)))
        self._values(e, keys)
        self.entities.append(e)
        return e

    # -- prose ----------------------------------------------------------------------------------
    def _pron(self, e: _Entity) -> tuple[str, str]:
        if not self.d.person:
            return "it", "its"
        return ("she", "her") if e.female else ("he", "his")

    def _clause(self, e: _Entity, key: str, value: str) -> str:
        return self.rng.choice(self.d.attribute(key).clauses).format(v=value, poss=self._pron(e)[1])

    def _profile(self, e: _Entity, keys: list[str]) -> str:
        r, d = self.rng, self.d
        kind = d.kind(e.kind)
        pron, poss = self._pron(e)
        n = d.ref_name(e.name)
        keys = list(keys)
        r.shuffle(keys)
        intros = list(d.intros) if keys else [t for t in d.intros if "{clause}" not in t]
        tpl = r.choice(intros)
        clause = ""
        if "{clause}" in tpl:
            k0 = keys.pop(0)
            clause = self._clause(e, k0, e.stated[k0])
        out = [tpl.format(N=_cap(n), n=n, a_kind=f"{article(kind.singular)} {kind.singular}", kind=kind.singular,
                          kinds=kind.plural, clause=clause)]
        while keys:
            g = min(len(keys), r.choice((1, 1, 2, 2, 3)))
            group, keys = keys[:g], keys[g:]
            if g == 1 and r.random() < 0.35:
                ref = r.choice((n, n, r.choice(kind.nouns)))
                out.append(_cap(r.choice(d.attribute(group[0]).sentences).format(ref=ref, v=e.stated[group[0]])))
                continue
            subj = r.choices((pron, r.choice(kind.nouns), n), weights=(5, 3, 2))[0]
            cl = [self._clause(e, k, e.stated[k]) for k in group]
            body = cl[0] if g == 1 else f"{cl[0]} and {cl[1]}" if g == 2 else f"{cl[0]}, {cl[1]}, and {cl[2]}"
            out.append(f"{_cap(subj)} {body}.")
        if r.random() < 0.3:
            # A pronoun reads well only as a subject ({Ref}); inside a sentence use a description.
            desc = r.choice(kind.nouns)
            remark = r.choice(d.remarks).format(Ref=_cap(r.choice((pron, desc))), ref=desc, poss=poss)
            out.insert(r.randint(1, len(out)), remark)
        return " ".join(out)

    def _add_entity_blocks(self, e: _Entity) -> None:
        """Profile (+ split part) (+ correction) for one entity, with their ordering constraints."""
        r, cfg = self.rng, self.cfg
        keys = list(e.stated)
        split_key = None
        if e.gold and r.random() < cfg.split_rate:
            split_key = self.asked[1] if r.random() < 0.5 else self.asked[0]
            keys.remove(split_key)
        prof_idx = len(self.blocks)
        self.blocks.append(_Block(self._profile(e, keys), e.gold, entity=e.name, role="profile"))
        where = {k: prof_idx for k in keys}
        if split_key is not None:
            pron = self._pron(e)[0]
            n = self.d.ref_name(e.name)
            text = r.choice(_SPLIT).format(n=n, N=_cap(n), pron=pron, clause=self._clause(e, split_key, e.stated[split_key]))
            where[split_key] = len(self.blocks)
            self.blocks.append(_Block(text, e.gold, after=prof_idx, entity=e.name, role="split"))
        if r.random() < cfg.correction_rate and e.stated:  # an entity stating nothing has nothing to correct
            asked_here = [k for k in self.asked if k in e.stated]
            pool = asked_here if (asked_here and r.random() < 0.8) else list(e.stated)
            key = r.choice(pool)
            old = e.stated[key]
            attr = self.d.attribute(key)
            new = old
            for _ in range(20):
                new = attr.value(r, e.kind, e.name)
                if new != old and new not in old and old not in new:
                    break
            if new == old:
                return
            e.final[key] = new
            e.corrected.add(key)
            n = self.d.ref_name(e.name)
            text = r.choice(_CORRECTION).format(label=attr.label, n=n, old=old, new=new)
            self.blocks.append(_Block(_cap(text), e.gold, after=where[key], entity=e.name, role="correction"))
            self.corrections.append({"name": e.name, "attribute": key, "old": old, "new": new, "gold": e.gold})

    def _add_cross(self, e: _Entity, pool: list[_Entity]) -> None:
        keys = [k for k in e.stated if k not in e.corrected]
        others = [f for f in pool if f is not e]
        if not keys or not others:
            return
        r = self.rng
        f = r.choice(others)
        k = r.choice(keys)
        fn, en = self.d.ref_name(f.name), self.d.ref_name(e.name)
        text = r.choice(_CROSS).format(F=_cap(fn), f=fn, e=en, rel="who" if self.d.person else "which",
                                       clause=self._clause(e, k, e.stated[k]))
        self.blocks.append(_Block(_cap(text), False, entity=e.name, role="cross"))

    # -- building -------------------------------------------------------------------------------
    def build_gold(self) -> None:
        r, cfg = self.rng, self.cfg
        gold: list[_Entity] = []
        for _ in range(cfg.gold_count()):
            name = None
            if gold and r.random() < cfg.near_duplicate_rate * 0.4:
                name = self._twin_name(r.choice(gold).name, self.kind)
                self.n_twins += name is not None
            gold.append(self._new_entity(self.kind, True, name))
        for e in gold:
            self._add_entity_blocks(e)
        for e in gold:
            if r.random() < cfg.distractor_rate:
                self._add_cross(e, self.entities)
        self.n_gold_blocks = len(self.blocks)
        # Twins of another kind come first among distractors, so trimming distractors drops them last.
        for e in gold:
            if self.other_kinds and r.random() < cfg.near_duplicate_rate * 0.6:
                k = r.choice(self.other_kinds)
                twin = self._twin_name(e.name, k)
                if twin:
                    self.n_twins += 1
                    self.add_distractor(kind=k, name=twin, twin=True)

    def add_distractor(self, kind: str | None = None, name: str | None = None, twin: bool = False) -> int:
        """Add one distractor entity with its passages; return the number of characters added."""
        r = self.rng
        if not self.other_kinds:  # a single-kind domain cannot have distractors (never the built-in ones)
            raise RuntimeError(f"domain {self.d.name!r} has a single kind: no distractors possible")
        before = len(self.blocks)
        e = self._new_entity(kind or r.choice(self.other_kinds), False, name)
        self._add_entity_blocks(e)
        if r.random() < self.cfg.distractor_rate:
            self._add_cross(e, self.entities)
        self._groups.append((before, len(self.blocks), e, twin))
        return sum(len(b.text) + 2 for b in self.blocks[before:])

    def drop_last_distractors(self, k: int) -> bool:
        """Remove the k most recently added distractors (twins, added first, go last); False if none left."""
        dropped = 0
        while dropped < k and self._groups:
            before, _, e, twin = self._groups.pop()
            self.n_twins -= twin
            del self.blocks[before:]
            self.entities.remove(e)
            self.corrections = [c for c in self.corrections if c["name"] != e.name]
            dropped += 1
        return dropped > 0

    # -- assembly -------------------------------------------------------------------------------
    def instruction(self) -> str:
        kind = self.d.kind(self.kind)
        a1, a2 = (self.d.attribute(k) for k in self.asked)
        text = _INSTRUCTION.format(kind=kind.singular, kinds=kind.plural, label1=a1.label, label2=a2.label,
                                   key1=a1.key, key2=a2.key, things=_THINGS.get(self.d.name, "entries"))
        return text + _EACH_ONCE.format(kind=kind.singular) if self.cfg.ask_each_once else text

    def preview(self) -> str:
        """The task stated before the text ("" unless preview_task)."""
        if not self.cfg.preview_task:
            return ""
        a1, a2 = (self.d.attribute(k) for k in self.asked)
        return _PREVIEW.format(kind=self.d.kind(self.kind).singular, label1=a1.label, label2=a2.label) + "\n\n"

    def arrange(self, n_fill: int) -> list[int]:
        """Order of content blocks (ids >= 0) and filler paragraphs (ids < 0: -1 - paragraph index)."""
        r = random.Random(f"{self.seed}:arrange:{n_fill}")
        content = list(range(len(self.blocks)))
        gold_ids = [i for i in content if self.blocks[i].gold]
        rest = [i for i in content if not self.blocks[i].gold] + [-1 - j for j in range(n_fill)]
        total = len(gold_ids) + len(rest)
        w = min(total, max(len(gold_ids), round(self.cfg.spread * total)))
        start = r.randrange(0, total - w + 1)
        if self.cfg.placement == "even":  # one gold passage per equal stratum of the window
            cuts = [start + k * w // len(gold_ids) for k in range(len(gold_ids) + 1)]
            gold_pos = [r.randrange(lo, hi) for lo, hi in zip(cuts, cuts[1:])]
        else:
            gold_pos = sorted(r.sample(range(start, start + w), len(gold_ids)))
        r.shuffle(gold_ids)
        other_pos = sorted(set(range(total)) - set(gold_pos))
        r.shuffle(rest)
        pos = dict(zip(gold_ids, gold_pos))
        pos.update(zip(rest, other_pos))
        # Enforce "b after a" (split parts, corrections) by swapping positions; chains are short.
        for _ in range(4):
            changed = False
            for b in content:
                a = self.blocks[b].after
                if a is not None and pos[b] < pos[a]:
                    pos[a], pos[b] = pos[b], pos[a]
                    changed = True
            if not changed:
                break
        return sorted(pos, key=pos.get)

    def render(self, units: list[str], heading: str, sizes: list[int]) -> tuple[str, list[int]]:
        paragraphs, i, j = [], 0, 0
        while i < len(units):
            size = sizes[j % len(sizes)]
            paragraphs.append(" ".join(units[i:i + size]))
            i += size
            j += 1
        order = self.arrange(len(paragraphs))
        body = "\n\n".join(self.blocks[b].text if b >= 0 else paragraphs[-1 - b] for b in order)
        return f"{self.preview()}{heading}\n\n{body}\n\n{self.instruction()}", order


def _filler_units(seed: str, domain: Domain, cfg: Text2JSONConfig):
    """Filler sentences, with the occasional entity-free sentence that carries an attribute value."""
    r = random.Random(f"{seed}:filler")
    filler = Filler(r, topic=domain.name, style=cfg.filler_style)
    while True:
        if r.random() < cfg.aggregate_rate:
            kind = domain.kind(r.choice([k.singular for k in domain.kinds]))
            attr = r.choice([a for a in domain.attributes if a.key not in _NO_AGGREGATE])
            v = attr.value(r, kind.singular, "")
            tpl = r.choice(_AGGREGATE)
            clause = r.choice(attr.clauses).format(v=v, poss="its")
            yield tpl.format(kinds=kind.plural, kind=kind.singular, label=attr.label, v=v, clause=clause)
        else:
            yield filler.sentence()


def generate_sample(seed, cfg: Text2JSONConfig | None = None, tokenizer=None, *, domain: str | None = None,
                    sample_id: str | None = None) -> Sample:
    """Generate one Text2JSON-style sample from a seed (int or str); deterministic."""
    cfg = cfg or Text2JSONConfig()
    token = SPELL_NUMBERS.set(cfg.spelled_numbers)
    pins = PIN_FORMATS.set({} if cfg.uniform_formats else None)  # a fresh dict: formats are pinned per sample
    try:
        return _generate_sample(seed, cfg, tokenizer, domain, sample_id)
    finally:
        PIN_FORMATS.reset(pins)
        SPELL_NUMBERS.reset(token)


def _generate_sample(seed, cfg: Text2JSONConfig, tokenizer, domain: str | None, sample_id: str | None) -> Sample:
    counter = as_counter(tokenizer)
    seed = str(seed)
    dom = DOMAINS[domain or cfg.domain or DOMAIN_ORDER[random.Random(f"{seed}:domain").randrange(4)]]
    b = _Builder(seed, dom, cfg)
    b.build_gold()
    heading = random.Random(f"{seed}:heading").choice(dom.headings)
    size_rng = random.Random(f"{seed}:sizes")
    sizes = [size_rng.randint(3, 7) for _ in range(4096)]

    # Grow the distractor set until the entity passages fill their share of the target.
    sample_text = " ".join(x.text for x in b.blocks)[:8000] or b.instruction()
    ratio = counter.tokens_per_char(sample_text)  # tokens per char from a tokenized sample
    target_chars = cfg.tokens / ratio
    content_chars = sum(len(x.text) + 2 for x in b.blocks) + len(heading) + len(b.instruction()) + len(b.preview())
    min_distractors = int(cfg.distractors_per_gold * cfg.gold_count()) + 2
    n_distractors = len(b._groups)
    budget = (1 - cfg.filler_share) * target_chars
    while (content_chars < budget or n_distractors < min_distractors) and content_chars < 0.97 * target_chars:
        content_chars += b.add_distractor()
        n_distractors += 1

    order: list[int] = []

    def render(units: list[str]) -> str:
        nonlocal order
        text, order = b.render(units, heading, sizes)
        return text

    while True:
        pool = UnitPool(_filler_units(seed, dom, cfg))
        try:
            fit = fit_to_length(render, pool, cfg.tokens, counter, tol=cfg.tolerance)
            break
        except LengthError:
            # Entity passages alone overshoot: drop 10% of the distractors and try again.
            if not b.drop_last_distractors(max(1, len(b._groups) // 10)):
                raise LengthError(
                    f"{cfg.gold_count()} gold entities do not fit in {cfg.tokens} {counter.unit}; "
                    "lower n_gold or raise tokens"
                ) from None
    render(pool.units[:fit.n_units])  # re-derive `order` for the returned text
    text = fit.text

    # Gold in order of first appearance (profile passage) in the text.
    pos = {blk: i for i, blk in enumerate(order)}
    profile_pos = {b.blocks[i].entity: pos[i] for i in range(len(b.blocks)) if b.blocks[i].role == "profile"}
    gold_entities = sorted((e for e in b.entities if e.gold), key=lambda e: profile_pos[e.name])
    gold = [{"name": e.name, b.asked[0]: e.final[b.asked[0]], b.asked[1]: e.final[b.asked[1]]} for e in gold_entities]
    total = max(len(order) - 1, 1)
    meta = {
        "source": "generated",
        "generator": GENERATOR_VERSION,
        "seed": seed,
        "domain": dom.name,
        "kind": b.kind,
        "attributes": list(b.asked),
        "n_gold": len(gold),
        "n_entities": len(b.entities),
        "n_distractor_entities": sum(not e.gold for e in b.entities),
        "n_near_duplicates": b.n_twins,
        "corrections": b.corrections,
        "entities": [{"name": e.name, "kind": e.kind, "gold": e.gold} for e in b.entities],
        "gold_positions": [round(profile_pos[e.name] / total, 4) for e in gold_entities],
        "n_tokens": fit.n_tokens,
        "target_tokens": cfg.tokens,
        "length_unit": counter.unit,
        "config": json.loads(json.dumps(dataclasses.asdict(cfg))),
    }
    return Sample(id=sample_id or f"text2json-gen-{seed}", prompt=text, gold=gold, meta=meta)


def generate(n: int, *, tokens: int | Sequence[int] | None = None, seed: int = 0, tokenizer=None,
             config: Text2JSONConfig | None = None, difficulty: str | None = None, **overrides) -> list[Sample]:
    """n samples; sample i uses seed "{seed}:{i}", domains cycle through the four, tokens may cycle a list.

    difficulty: a name in DIFFICULTIES ("spec", "easy", "calibrated"), applied on top of `config`.
    overrides: Text2JSONConfig fields (n_gold=..., spread=...) applied last.
    """
    base = config or Text2JSONConfig()
    if difficulty is not None:
        if difficulty not in DIFFICULTIES:
            raise ValueError(f"unknown Text2JSON difficulty {difficulty!r}; allowed: {', '.join(DIFFICULTIES)}")
        base = dataclasses.replace(base, **DIFFICULTIES[difficulty])
    if overrides:
        base = dataclasses.replace(base, **overrides)
    lengths = [base.tokens] if tokens is None else ([tokens] if isinstance(tokens, int) else list(tokens))
    counter = as_counter(tokenizer)
    out = []
    for i in range(n):
        cfg = dataclasses.replace(base, tokens=int(lengths[i % len(lengths)]))
        dom = base.domain or DOMAIN_ORDER[i % len(DOMAIN_ORDER)]
        out.append(generate_sample(f"{seed}:{i}", cfg, counter, domain=dom, sample_id=f"text2json-{cfg.tokens}-s{seed}-{i:04d}"))
    return out
