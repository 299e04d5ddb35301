"""Filler styles: "templates" (unchanged, byte for byte) and "rich" (varied, still fact-free)."""

from __future__ import annotations

import hashlib
import itertools
import random
import re

import pytest

from shadowkv_lab.tasks import filler as F
from shadowkv_lab.tasks.filler import FILLER_STYLES, Filler

TOPICS = (None, "products", "medical", "organizations", "movies")

# Recorded from the code before the "style" argument existed: Filler(random.Random(3), topic="products").
EXPECTED_PRODUCTS_SEED3 = [
    "Few travellers expected the arrival of the railway, yet the town adapted within a few years.",
    "Few farmers expected a new bridge across the valley, yet life went on much as before.",
    "There is a familiar shift here: a clear question is half of an answer.",
    "The town council championed the design of packaging and concluded that the debate is far from over.",
    ("When visiting scholars examined the design of packaging, they found that "
     "the best advice usually arrives too late."),
]
EXPECTED_PRODUCTS_SEED3_PARAGRAPH = (
    "Seasoned analysts examined the archive of letters and concluded that the picture keeps changing. "
    "There is a patient pattern here: a good walk settles most arguments. Before the reforms, the curious change in "
    "the customs of the market towns drew attention from the regional press. Product designers revisited the return "
    "policies of large stores and concluded that opinions differ on the details. Warehouse managers have long argued "
    "that reliability matters more than novelty. For most of the century, the uneven pattern in the return policies "
    "of large stores drew attention from most observers."
)
# sha256 (first 16 hex digits) of 300 sentences + 5 paragraphs from Filler(random.Random(f"digest:{topic}"), topic),
# recorded from the code before the "style" argument existed.
EXPECTED_DIGESTS = {
    None: "b38b3d1259465e36", "products": "3c628f0b37992f55", "medical": "aa1422a8e25ca33c",
    "organizations": "56f06d3e9b8099bf", "movies": "29952f83d950af92",
}

_NUMBER_WORDS = (
    "zero|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|"
    "seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety|hundred|thousand|million|"
    "billion|trillion|dozen|first|second|third|half|once|twice|single|double"
)
NUMBER_WORD = re.compile(rf"\b(?:{_NUMBER_WORDS})s?\b", re.IGNORECASE)
UNIT_WORD = re.compile(
    r"\b(?:percent|per cent|kg|km|cm|mm|mb|gb|tb|grams?|kilograms?|kilos?|pounds?|ounces?|metres?|meters?|miles?|"
    r"inch(?:es)?|feet|foot|litres?|liters?|gallons?|hours?|minutes?|seconds?|days?|weeks?|months?|years?|"
    r"decades?|centur(?:y|ies)|dollars?|euros?|cents?|degrees?|gigabytes?|terabytes?)\b", re.IGNORECASE)
FORBIDDEN_CHARS = re.compile(r"[0-9$€£¥\[\]{}()\"'`]")
WORD = re.compile(r"[a-z]+(?:-[a-z]+)*")


def _stream(seed, topic, style, n=800):
    f = Filler(random.Random(seed), topic=topic, style=style)
    return [f.sentence() for _ in range(n)]


def _distinct_4gram_share(sentences):
    grams = []
    for s in sentences:
        w = WORD.findall(s.lower())
        grams += [tuple(w[i:i + 4]) for i in range(len(w) - 3)]
    return len(set(grams)) / len(grams)


@pytest.fixture(scope="module")
def rich():
    return {t: _stream(0, t, "rich") for t in TOPICS}


@pytest.fixture(scope="module")
def templates():
    return {t: _stream(0, t, "templates") for t in TOPICS}


# -- style argument --------------------------------------------------------------------------------------

def test_styles_constant():
    assert FILLER_STYLES == ("templates", "rich")


def test_unknown_style_raises_naming_value_and_choices():
    with pytest.raises(ValueError, match="lorem") as e:
        Filler(random.Random(0), style="lorem")
    assert "templates" in str(e.value) and "rich" in str(e.value)


# -- "templates" must not change ------------------------------------------------------------------------

def test_templates_default_unchanged():
    f = Filler(random.Random(3), topic="products")
    assert [f.sentence() for _ in range(5)] == EXPECTED_PRODUCTS_SEED3
    assert f.paragraph() == EXPECTED_PRODUCTS_SEED3_PARAGRAPH
    g = Filler(random.Random(3), topic="products", style="templates")
    assert [g.sentence() for _ in range(5)] == EXPECTED_PRODUCTS_SEED3


@pytest.mark.parametrize("topic", TOPICS)
def test_templates_stream_digest_unchanged(topic):
    for kw in ({}, {"style": "templates"}):
        f = Filler(random.Random(f"digest:{topic}"), topic=topic, **kw)
        parts = [f.sentence() for _ in range(300)] + [f.paragraph() for _ in range(5)]
        assert hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16] == EXPECTED_DIGESTS[topic]


# -- "rich": grammar -----------------------------------------------------------------------------------------

def test_rich_grammar_is_closed_and_large():
    slot = re.compile(r"\{(\w+)\}")
    entries = list(F._RICH_TEMPLATES) + [e for v in F._RICH.values() for e in v]
    entries += [e for t in F._RICH_TOPICS.values() for v in t.values() for e in v]
    assert {m for e in entries for m in slot.findall(e)} <= set(F._RICH)
    assert set(F._RICH_TOPICS) == set(F._TOPICS)
    assert all(set(t) <= set(F._RICH) for t in F._RICH_TOPICS.values())
    assert len(F._RICH_TEMPLATES) >= 60
    n_general = sum(len(v) for v in F._GENERAL.values())
    assert sum(len(v) for v in F._RICH.values()) >= 3 * n_general
    for topic, lists in F._RICH_TOPICS.items():
        assert sum(len(v) for v in lists.values()) >= 3 * sum(len(v) for v in F._TOPICS[topic].values())


def test_rich_deterministic_per_seed():
    assert _stream(5, "movies", "rich", 50) == _stream(5, "movies", "rich", 50)
    assert _stream(5, "movies", "rich", 50) != _stream(6, "movies", "rich", 50)
    assert _stream(5, "movies", "rich", 50) != _stream(5, "movies", "templates", 50)


@pytest.mark.parametrize("topic", TOPICS)
def test_rich_is_fact_free(rich, topic):
    for s in rich[topic]:
        assert not FORBIDDEN_CHARS.search(s), s
        assert not NUMBER_WORD.search(s), s
        assert not UNIT_WORD.search(s), s
        words = s.split()
        assert words[0][0].isupper(), s
        assert not any(c.isupper() for w in words[1:] for c in w), s
        assert s[-1] in ".?" and s.count(".") + s.count("?") == 1, s
        assert not re.search(r"\b[Aa] [aeiouAEIOU]", s), s  # a/an fixed
        assert "  " not in s and " ," not in s and " ;" not in s, s


@pytest.mark.parametrize("topic", TOPICS)
def test_rich_avoids_text2json_kinds_labels_and_values(rich, topic):
    """Filler must not name an entity kind, an attribute label or a plain-word attribute value of any domain."""
    from shadowkv_lab.tasks.text2json_domains import DOMAINS

    domains = DOMAINS.values() if isinstance(DOMAINS, dict) else DOMAINS
    r = random.Random(0)
    phrases = set()
    for d in domains:
        for k in d.kinds:
            phrases |= {k.singular, k.plural, *k.nouns}
        for a in d.attributes:
            phrases.add(a.label)
            for k in d.kinds:
                for _ in range(40):
                    v = a.value(r, k.singular, "Name")
                    if v == v.lower() and not re.search(r"\d", v):  # words only: digits and names fail elsewhere
                        phrases.add(v)
    pattern = re.compile(r"\b(?:" + "|".join(re.escape(p.lower()) for p in sorted(phrases)) + r")\b")
    hits = [s for s in rich[topic] if pattern.search(s.lower())]
    assert not hits, [(pattern.search(s.lower()).group(0), s) for s in hits[:5]]


@pytest.mark.parametrize("style", FILLER_STYLES)
@pytest.mark.parametrize("topic", TOPICS)
def test_never_the_same_sentence_twice_in_a_row(rich, templates, style, topic):
    ss = (rich if style == "rich" else templates)[topic]
    assert all(a != b for a, b in itertools.pairwise(ss))


def test_rich_has_questions_and_compound_sentences(rich):
    ss = [s for t in TOPICS for s in rich[t]]
    assert sum(s.endswith("?") for s in ss) >= 20
    for conn in (" while ", " because ", " even though ", "; meanwhile, ", " and yet "):
        assert any(conn in s for s in ss), conn
    lengths = [len(s.split()) for s in ss]
    assert min(lengths) <= 5 and max(lengths) >= 35


# -- diversity ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("topic", TOPICS)
def test_rich_diversity(rich, templates, topic):
    """800 sentences: >= 97% distinct; word 4-grams far less repetitive than the small grammar.

    A distinct-4-gram share 3x the templates' (about 0.32-0.35 at 800 sentences) would exceed 1, so the
    factor 3 is asserted on the share of repeated 4-grams (1 - distinct share), plus an absolute floor.
    """
    ss, base = rich[topic], templates[topic]
    assert len(set(ss)) / len(ss) >= 0.97
    share, base_share = _distinct_4gram_share(ss), _distinct_4gram_share(base)
    assert share >= 0.8
    assert (1 - base_share) >= 3 * (1 - share)


# -- paragraph() and sentences() -------------------------------------------------------------------------

@pytest.mark.parametrize("style", FILLER_STYLES)
@pytest.mark.parametrize("topic", TOPICS)
def test_paragraph_and_sentences_for_both_styles(style, topic):
    f = Filler(random.Random(9), topic=topic, style=style)
    for _ in range(20):
        p = f.paragraph()
        assert 3 <= len(re.findall(r"[.?](?: |$)", p)) <= 6, p
    a, b = Filler(random.Random(4), topic=topic, style=style), Filler(random.Random(4), topic=topic, style=style)
    it = a.sentences()
    assert [next(it) for _ in range(10)] == [b.sentence() for _ in range(10)]
