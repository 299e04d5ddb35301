"""Deterministic filler prose: varied, fact-free sentences used to pad prompts to a target length.

Filler must not look like the facts a task asks about (no entity names, no attribute values), yet it
should read like text, not like a repeated line, so that long prompts are not trivially compressible.
Sentences are assembled from templates and word lists; a seeded `random.Random` makes the stream
reproducible. Topics add domain flavour (the Text2JSON domains) on top of a general vocabulary.

RULER's classic "noise" haystack (the same five sentences repeated) is `noise_sentences`.
"""

from __future__ import annotations

import random
import re
from typing import Iterator

NOISE = ("The grass is green.", "The sky is blue.", "The sun is yellow.", "Here we go.", "There and back again.")

_GENERAL = {
    "time": [
        "Last spring", "Over the past decade", "In the early years", "During the long winter", "By the end of the season",
        "For most of the century", "In recent months", "Every few years", "At the turn of the decade", "Later that autumn",
        "Within a generation", "Not long afterwards", "Before the reforms", "In the years that followed", "Early one morning",
    ],
    "group": [
        "local historians", "a handful of researchers", "the regional press", "several committees", "most observers",
        "independent reviewers", "the editors", "a group of volunteers", "visiting scholars", "neighbourhood associations",
        "seasoned analysts", "many teachers", "the town council", "long-time residents", "a few skeptics",
    ],
    "verb": [
        "revisited", "questioned", "documented", "debated", "reconsidered", "mapped", "summarised", "praised",
        "criticised", "catalogued", "examined", "championed", "overlooked", "reinterpreted", "compared",
    ],
    "object": [
        "the old assumptions", "the archive of letters", "the quieter districts", "the shifting coastline",
        "the habits of small workshops", "the record of public meetings", "the patterns of seasonal trade",
        "the history of the river crossings", "the slow growth of the suburbs", "the customs of the market towns",
        "the notes left by earlier surveys", "the ways people shared news", "the architecture of the harbour",
        "the rhythm of daily routines", "the state of the country roads", "the songs of the fishing villages",
        "the accounts of early travellers", "the old ferry timetables", "the gardens behind the terraces",
        "the letters between rival families", "the slow decline of the canal trade",
    ],
    "claim": [
        "small changes often matter more than grand plans", "most lasting ideas begin as modest experiments",
        "patience tends to reward careful observers", "the simplest explanation is rarely the whole story",
        "habits change faster than institutions", "good records make for better decisions",
        "the weather shaped more than the harvest", "memory is a poor substitute for written notes",
        "people trust what they can see for themselves", "every map leaves something out",
        "a clear question is half of an answer", "progress is uneven from one place to the next",
        "quiet work rarely makes the headlines", "the details only make sense in context",
        "tradition and novelty are often closer than they seem", "the easy answers rarely survive a second look",
        "most plans change once they meet the weather", "old buildings tell stories that archives forget",
        "a good walk settles most arguments", "the best advice usually arrives too late",
        "cities grow in ways no planner predicts", "the loudest voices are not always the best informed",
        "shared meals do more for a community than speeches", "a well-kept notebook outlasts a good memory",
        "new tools rarely replace old habits overnight",
    ],
    "qualifier": [
        "the evidence remains incomplete", "not everyone agrees", "the picture keeps changing",
        "some questions were never settled", "opinions differ on the details", "the sources are uneven",
        "much depends on how one reads the record", "the debate is far from over",
    ],
    "people": ["travellers", "students", "craftsmen", "farmers", "readers", "musicians", "shopkeepers", "walkers"],
    "event": [
        "such a sudden shift", "the long delay", "the return of the old festival", "a quiet revival of interest",
        "the closure of the old mill", "a new bridge across the valley", "the arrival of the railway",
    ],
    "outcome": [
        "the change proved lasting", "life went on much as before", "the mood slowly improved",
        "the town adapted within a few years", "new routines soon took hold", "few regretted it in the end",
    ],
    "adj": ["modest", "curious", "unexpected", "gradual", "familiar", "careful", "lively", "patient", "uneven", "steady"],
    "noun": ["change", "pattern", "tradition", "approach", "habit", "discussion", "practice", "shift", "routine", "debate"],
}

# Domain flavour: extra groups/objects/claims mixed into the general vocabulary.
_TOPICS = {
    "products": {
        "group": ["retail buyers", "hardware reviewers", "warehouse managers", "consumer advocates", "product designers"],
        "object": ["the design of packaging", "the logistics of spare parts", "the habits of online shoppers",
                   "the return policies of large stores", "the pace of firmware updates", "the marketing calendar"],
        "claim": ["shoppers compare more than they buy", "reliability matters more than novelty",
                  "supply chains recover slowly after a disruption", "support quality shapes brand loyalty"],
    },
    "medical": {
        "group": ["hospital administrators", "clinical educators", "patient advocates", "staffing coordinators", "nursing unions"],
        "object": ["the rota for weekend shifts", "the training of new residents", "the layout of waiting rooms",
                   "the paperwork of referrals", "the rules for continuing education", "the handover routines"],
        "claim": ["clear handovers prevent many errors", "staffing shortages hit rural clinics first",
                  "mentoring keeps experienced staff engaged", "patients value time more than technology"],
    },
    "organizations": {
        "group": ["board members", "auditors", "regional regulators", "employee councils", "governance experts"],
        "object": ["the annual reporting cycle", "the rules for public tenders", "the structure of advisory boards",
                   "the practice of internal audits", "the habits of committee meetings", "the charters of partnerships"],
        "claim": ["transparency builds public trust", "mergers rarely go as planned",
                  "small teams often move faster than large departments", "good governance is mostly routine"],
    },
    "movies": {
        "group": ["festival programmers", "film critics", "cinema owners", "script readers", "archivists"],
        "object": ["the economics of distribution", "the restoration of old reels", "the habits of weekend audiences",
                   "the craft of sound design", "the rise of streaming catalogues", "the art of the trailer"],
        "claim": ["word of mouth still sells tickets", "sequels depend on loyal audiences",
                  "a good score can rescue a weak scene", "festival buzz fades quickly"],
    },
}

_TEMPLATES = [
    "{Time}, {group} {verb} {object}.",
    "{Group} have long argued that {claim}.",
    "According to {group}, {claim}, although {qualifier}.",
    "Few {people} expected {event}, yet {outcome}.",
    "It is often said that {claim}.",
    "{Time}, the {adj} {noun} in {object} drew attention from {group}.",
    "Some {people} still remember {event}; {outcome}.",
    "When {group} {verb} {object}, they found that {claim}.",
    "The {adj} {noun} described by {group} suggests that {claim}.",
    "{Group} {verb} {object} and concluded that {qualifier}.",
    "Nobody planned {event}, but {outcome}.",
    "There is a {adj} {noun} here: {claim}.",
    "As {group} like to point out, {claim}.",
    "{Time}, {people} and {group} alike {verb} {object}.",
    "The question of {object} keeps returning, and {qualifier}.",
]


_AN = re.compile(r"\b([Aa]) (?=[aeiouAEIOU])")


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


class Filler:
    """An endless, reproducible stream of filler sentences (optionally flavoured by a topic)."""

    def __init__(self, rng: random.Random, topic: str | None = None):
        if topic is not None and topic not in _TOPICS:
            raise ValueError(f"unknown filler topic {topic!r}; known: {sorted(_TOPICS)}")
        self.rng = rng
        self.vocab = {k: list(v) for k, v in _GENERAL.items()}
        for k, v in (_TOPICS.get(topic) or {}).items():
            # Topic words are listed twice so domain flavour shows up often without crowding out variety.
            self.vocab[k] = self.vocab[k] + list(v) * 2
        self._last: str | None = None

    def sentence(self) -> str:
        r = self.rng
        while True:
            tpl = r.choice(_TEMPLATES)
            slots = {k: r.choice(v) for k, v in self.vocab.items()}
            slots.update({k.capitalize(): _cap(v) for k, v in slots.items()})
            s = _AN.sub(r"\1n ", tpl.format(**slots))  # "a uneven" -> "an uneven"
            if s != self._last:  # never the same sentence twice in a row
                self._last = s
                return s

    def sentences(self) -> Iterator[str]:
        while True:
            yield self.sentence()

    def paragraph(self, n_min: int = 3, n_max: int = 6) -> str:
        return " ".join(self.sentence() for _ in range(self.rng.randint(n_min, n_max)))


def noise_sentences() -> Iterator[str]:
    """RULER's noise haystack: the same five sentences forever."""
    while True:
        yield from NOISE
