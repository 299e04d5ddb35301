"""Vocabulary of the four Text2JSON domains: entity kinds, names, attributes and how prose states them.

Each `Domain` lists several entity kinds (the sample asks for one; the others are distractors that a
careless reader would extract too), an attribute vocabulary shared by its kinds, a name generator
with a near-duplicate variant, and sentence templates. Every attribute value is produced as the exact
string the text will contain ("$1,299", "1.42 kg", "twelve hours"), because the instruction asks for
values copied as written: the gold is then unambiguous and checkable against the text.
"""

from __future__ import annotations

import contextvars
import random
import re
from dataclasses import dataclass
from typing import Callable

APOS = "\u2019"  # curly apostrophe: some names carry it, the scorer folds it to '

# ---------------------------------------------------------------------------------------------
# Small helpers


_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


# Whether small numbers may be written in words; the generator turns it off for `spelled_numbers=False`. A switch
# rather than a parameter so the random stream (and so every other choice of a sample) is the same either way.
SPELL_NUMBERS: contextvars.ContextVar[bool] = contextvars.ContextVar("SPELL_NUMBERS", default=True)


# One surface format per attribute within a sample (Text2JSONConfig.uniform_formats): while this holds a dict, _fmt
# returns, for each format key, the format the sample drew first. Small models harmonise the values they list ("$279"
# becomes "279 dollars" next to other prices written that way), which the exact-match scorer counts as wrong.
PIN_FORMATS: contextvars.ContextVar[dict | None] = contextvars.ContextVar("PIN_FORMATS", default=None)


def _fmt(rng, key: str, options: list[str]) -> str:
    """rng.choice(options), or under PIN_FORMATS the option at the index first drawn for `key` in this sample.
    Draws from rng either way, so every other choice of the sample stays the same."""
    pick = rng.choice(options)
    pins = PIN_FORMATS.get()
    if pins is None:
        return pick
    return options[pins.setdefault(key, options.index(pick))]


def num_words(n: int) -> str:
    """English words for 0..99 ("forty-two"); larger numbers stay digits, as prose would write them."""
    if n < 0 or n > 99 or not SPELL_NUMBERS.get():
        return str(n)
    if n < 20:
        return _ONES[n]
    return _TENS[n // 10] + ("-" + _ONES[n % 10] if n % 10 else "")


def article(word: str) -> str:
    w = word.lower()
    if w.startswith(("uni", "use", "eu", "one")):  # "a university", "a user": the sound, not the letter
        return "a"
    return "an" if w[:1] in "aeiou" else "a"


def _trim(x: float, digits: int) -> str:
    s = f"{x:.{digits}f}"
    return s.rstrip("0").rstrip(".") if "." in s else s


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


# ---------------------------------------------------------------------------------------------
# Data structures


@dataclass(frozen=True)
class Attribute:
    """One attribute: JSON key, prose label, how prose states it, and how its values look.

    clauses: verb phrases whose subject is the entity, 3rd person singular ("weighs {v}").
    sentences: whole sentences with {ref}, a noun phrase naming the entity (never a pronoun).
    value(rng, kind, name) -> the value string exactly as the text will contain it.
    """

    key: str
    label: str
    clauses: tuple[str, ...]
    sentences: tuple[str, ...]
    value: Callable[[random.Random, str, str], str]


@dataclass(frozen=True)
class Kind:
    singular: str
    plural: str
    nouns: tuple[str, ...]  # anaphoric descriptions used after the name ("the laptop", "the machine")


@dataclass(frozen=True)
class Domain:
    name: str
    headings: tuple[str, ...]
    kinds: tuple[Kind, ...]
    attributes: tuple[Attribute, ...]
    person: bool  # entities are people: pronouns she/he and relative "who"
    make_name: Callable[[random.Random, str], str]
    near_duplicate: Callable[[random.Random, str, str], str]
    intros: tuple[str, ...]
    remarks: tuple[str, ...]
    use_article: bool = False  # product names read "the Kestrel NX-40"

    def kind(self, singular: str) -> Kind:
        for k in self.kinds:
            if k.singular == singular:
                return k
        raise KeyError(singular)

    def attribute(self, key: str) -> Attribute:
        for a in self.attributes:
            if a.key == key:
                return a
        raise KeyError(key)

    def ref_name(self, name: str) -> str:
        """How prose names the entity (products take a definite article)."""
        return f"the {name}" if self.use_article else name


# ---------------------------------------------------------------------------------------------
# People (medical entities; leaders, directors and actors elsewhere)

FEMALE = (
    "Amara Beatriz Clara Dalia Elena Farah Greta Hana Ines Jana Keiko Leila Maren Nadia Olga Priya Rosa Sofia "
    "Tamsin Ulla Vera Wanda Yara Zoe Alma Brigitte Celeste Dora Esme Fiona Gisela Helga Irene Judith Katya Lucia "
    "Mirela Noor Odile Paula"
).split()
MALE = (
    "Aaron Bruno Carlos Dmitri Emil Felix Gustav Hugo Idris Jonas Kofi Luca Marek Nils Omar Pavel Rafael Soren "
    "Tomas Umar Viktor Walter Xavier Yusuf Anton Bernd Cyril Dario Elias Florin Gideon Henrik Ivo Jasper Kasimir "
    "Leon Matteo Nikolai Oskar Pieter"
).split()
LAST = (
    "Okafor Lindqvist Moreau Haddad Petrov Tanaka Castillo Novak Brennan Ferreira Kowalski Mendes Adeyemi Larsen "
    "Whitfield Sato Rahman Dubois Albescu Hartmann Quintero Nakamura Osei Varga Lindgren Marchetti Ibarra Kaminski "
    "Ashworth Delacroix Engstrom Fontaine Gallagher Horvath Iversen Jankowski Karlsson Lombardi Mbeki Nystrom "
    "Oyelaran Pellegrini Rasmussen Szabo Thornbury Underwood Valdes Wojcik Yilmaz Zeller Abernathy Bergstrom Cardoso "
    "Draper Eriksen Falk Grimaldi Holloway Ishikawa Jovanovic Keller Lachance Molina Nwosu Ortega Pacheco Quist "
    "Rossi Strand Tavares Uribe Vasquez Weber Alvarado Bishop Coelho Dalton Esposito Fischer Guerin Hale Ivanova "
    "Jansen Kuznetsov Lowell Mercer Navarro Olsen Prentice Reyes Sandoval Tremblay"
).split() + [f"O{APOS}Brien", f"D{APOS}Souza", f"O{APOS}Neill", f"D{APOS}Angelo", f"O{APOS}Connor"]
_FEMALE_SET = frozenset(FEMALE)
_SIMILAR_FIRST = {
    "Ana": "Anna", "Clara": "Klara", "Elena": "Helena", "Sofia": "Sophia", "Leila": "Layla", "Carlos": "Carlo",
    "Jonas": "Jonah", "Luca": "Lucas", "Tomas": "Thomas", "Marek": "Mark", "Nadia": "Nadja", "Priya": "Priyanka",
    "Zoe": "Chloe", "Irene": "Irina", "Emil": "Emile", "Felix": "Feliks", "Hugo": "Hugh", "Pavel": "Paul",
}


def person_name(rng: random.Random) -> str:
    first = rng.choice(FEMALE if rng.random() < 0.5 else MALE)
    return f"{first} {rng.choice(LAST)}"


def is_female(name: str) -> bool:
    first = name.split()[0]
    return first in _FEMALE_SET or first in ("Anna", "Klara", "Helena", "Sophia", "Layla", "Nadja", "Priyanka", "Chloe", "Irina")


def person_near_duplicate(rng: random.Random, name: str, kind: str) -> str:
    parts = name.split()
    first, last = parts[0], parts[-1]
    choice = rng.randrange(3)
    if choice == 0:  # add or change a middle initial
        return f"{first} {rng.choice('ABCDEFGHJKLMNPRST')}. {last}"
    if choice == 1 and first in _SIMILAR_FIRST:
        return f"{_SIMILAR_FIRST[first]} {last}"
    # one-letter change of a vowel in the last name: Okafor -> Okafer
    idx = [i for i, c in enumerate(last) if c in "aeiou" and i > 0]
    if not idx:
        return f"{first} {last}-{rng.choice(LAST)}"
    i = rng.choice(idx)
    new = rng.choice([v for v in "aeiou" if v != last[i]])
    return f"{first} {last[:i]}{new}{last[i + 1:]}"


# ---------------------------------------------------------------------------------------------
# Shared value pools

CITIES = (
    "Porto", "Ghent", "Tampere", "Leeds", "Graz", "Lyon", "Bergen", "Kraków", "Valencia", "Aarhus", "Bologna", "Cork",
    "Dresden", "Utrecht", "Brno", "Malmö", "Seville", "Tartu", "Nantes", "Gothenburg", "Halifax", "Adelaide", "Osaka",
    "Curitiba", "Mombasa", "Pune", "Wellington", "Tucson", "Quebec City", "Cluj-Napoca", "Ljubljana", "Bilbao",
    "Rotterdam", "Turku", "Innsbruck", "Plymouth", "Salzburg", "Trondheim", "Coimbra", "Lausanne",
)
PLACES = (
    "Riverside", "Northfield", "Lakeshore", "Harbourview", "Elmwood", "Westbrook", "Cedar Hill", "Stonebridge",
    "Fairhaven", "Oakridge", "Maple Grove", "Ashford", "Brookdale", "Kingsley", "Redcliffe", "Silverlake",
    "Thornton", "Willowmere", "Highgate", "Glenmore", "Bayside", "Pinecrest", "Marlow", "Eastvale",
)
ROOTS = (
    "Halvorsen", "Brightwater", "Northgate", "Calloway", "Redmere", "Ostrava", "Bellwether", "Kingfisher", "Marrowby",
    "Tidewell", "Ashcombe", "Greyhaven", "Ellison", "Falkirk", "Juniper", "Larkspur", "Meridian", "Novaris",
    "Oakhurst", "Pemberton", "Quillon", "Rosendale", "Saltmarsh", "Thistledown", "Umbria", "Valcourt", "Westmoor",
    "Yarrow", "Zephyr", "Alderney", "Blackwood", "Corrigan", "Dunmore", "Everhart", "Foxglove", "Granger",
    "Hollis", "Ironvale", "Kestrel", "Lindell",
)


# ---------------------------------------------------------------------------------------------
# Products

_BRANDS = (
    "Kestrel", "Lumio", "Vantor", "Norvik", "Aurelo", "Tessara", "Quorra", "Brixel", "Caldera", "Zentra", "Halcyon",
    "Obsidia", "Pyxis", "Ravelo", "Sundial", "Toravi", "Ultrix", "Veloce", "Wexford", "Xylo", "Yonder", "Zephyra",
    "Arclight", "Boreal", "Cobalt", "Dynamo", "Ember", "Fathom", "Glint", "Helix",
)
_SERIES = ("Nova", "Air", "Pro", "Edge", "Flex", "Core", "Volt", "Aero", "Pulse", "Orbit", "Spark", "Vista", "Prime", "Atlas")
_SUFFIXES = (" Pro", " Plus", " Mini", " Lite", " Max", "s", " Ultra", " SE")


def product_name(rng: random.Random, kind: str) -> str:
    brand = rng.choice(_BRANDS)
    style = rng.randrange(3)
    if style == 0:
        code = "".join(rng.choice("ABCDEFGHKLMNPRSTVXZ") for _ in range(2))
        return f"{brand} {code}-{rng.randrange(10, 100)}"
    if style == 1:
        return f"{brand} {rng.choice(_SERIES)} {rng.randrange(2, 20)}"
    return f"{brand} {rng.choice(_SERIES)}{rng.choice(['', ' X', ' S', ' Z'])} {rng.randrange(100, 1000)}"


def product_near_duplicate(rng: random.Random, name: str, kind: str) -> str:
    if rng.random() < 0.6:
        return name + rng.choice(_SUFFIXES)
    m = re.search(r"(\d+)$", name)
    if m:
        n = int(m.group(1))
        return name[: m.start()] + str(n + rng.choice([1, 2, 5, 10]))
    return name + " II"


_PRICE = {"laptop": (499, 3299), "smartphone": (199, 1499), "tablet": (149, 1299), "smartwatch": (99, 899),
          "digital camera": (299, 4499), "e-reader": (79, 399)}
_GRAMS = {"laptop": (900, 2800), "smartphone": (140, 240), "tablet": (290, 750), "smartwatch": (25, 65),
          "digital camera": (350, 1500), "e-reader": (150, 320)}
_SCREEN = {"laptop": (13.0, 17.3), "smartphone": (5.4, 6.9), "tablet": (7.9, 12.9), "smartwatch": (1.2, 2.1),
           "digital camera": (2.7, 3.5), "e-reader": (6.0, 10.3)}
_STORAGE = {"laptop": ("256 GB", "512 GB", "1 TB", "2 TB"), "smartphone": ("64 GB", "128 GB", "256 GB", "512 GB"),
            "tablet": ("64 GB", "128 GB", "256 GB", "1 TB"), "smartwatch": ("8 GB", "16 GB", "32 GB"),
            "digital camera": ("2 GB", "4 GB", "8 GB", "16 GB"), "e-reader": ("8 GB", "16 GB", "32 GB")}


def _price(rng, kind, name):
    lo, hi = _PRICE.get(kind, (99, 1999))
    n = rng.randrange(lo, hi) // 10 * 10 + 9
    return _fmt(rng, "price", [f"${n:,}", f"${n:,}", f"{n:,} dollars", f"US${n:,}", f"${n:,}.00"])


def _weight(rng, kind, name):
    lo, hi = _GRAMS.get(kind, (100, 2000))
    g = rng.randrange(lo, hi)
    if g >= 1000:
        return _fmt(rng, "weight_kg", [f"{_trim(g / 1000, 2)} kg", f"{_trim(g / 1000, 2)} kilograms", f"{g:,} grams",
                           f"{_trim(g / 453.6, 1)} pounds"])
    return _fmt(rng, "weight_g", [f"{g} grams", f"{g} g", f"{_trim(g / 28.35, 1)} ounces"])


def _battery(rng, kind, name):
    if kind == "digital camera":
        return f"{rng.randrange(25, 95) * 10} shots"
    if kind == "e-reader":
        n = rng.randrange(3, 9)
        return _fmt(rng, "battery_weeks", [f"{n} weeks", f"{num_words(n)} weeks"])
    lo, hi = {"laptop": (6, 23), "smartphone": (18, 41), "tablet": (8, 16), "smartwatch": (18, 73)}.get(kind, (5, 30))
    n = rng.randrange(lo, hi)
    return _fmt(rng, "battery_hours", [f"{n} hours", f"{num_words(n)} hours", f"{n} hours"])


def _storage(rng, kind, name):
    v = rng.choice(_STORAGE.get(kind, ("64 GB", "128 GB")))
    n, unit = v.split()
    return _fmt(rng, "storage", [v, v, f"{n} {'gigabytes' if unit == 'GB' else 'terabytes' if n != '1' else 'terabyte'}", f"{n}{unit}"])


def _screen(rng, kind, name):
    lo, hi = _SCREEN.get(kind, (5.0, 15.0))
    return f"{_trim(rng.uniform(lo, hi), 1)} inches"


PRODUCTS = Domain(
    name="products",
    headings=("Product specifications digest", "Consumer electronics buyer's notes", "Retail catalogue and trade press excerpts"),
    kinds=(
        Kind("laptop", "laptops", ("the laptop", "the notebook", "this machine")),
        Kind("smartphone", "smartphones", ("the phone", "the handset", "this smartphone")),
        Kind("tablet", "tablets", ("the tablet", "this slate")),
        Kind("smartwatch", "smartwatches", ("the watch", "this wearable")),
        Kind("digital camera", "digital cameras", ("the camera", "this camera body")),
        Kind("e-reader", "e-readers", ("the e-reader", "this reader")),
    ),
    attributes=(
        Attribute("price", "price",
                  ("costs {v}", "retails for {v}", "is priced at {v}", "sells for {v}", "carries a list price of {v}"),
                  ("The asking price for {ref} is {v}.", "Shoppers can expect to pay {v} for {ref}.",
                   "At launch, {ref} was listed at {v}."), _price),
        Attribute("weight", "weight",
                  ("weighs {v}", "tips the scales at {v}", "has a weight of {v}", "comes in at {v}"),
                  ("The weight of {ref} is {v}.", "On the scale, {ref} registers {v}."), _weight),
        Attribute("battery_life", "battery life",
                  ("lasts {v} on a single charge", "offers a battery life of {v}", "is rated for {v} per charge",
                   "runs for {v} between charges"),
                  ("Battery life for {ref} is rated at {v}.", "Testers measured {v} of battery life for {ref}."), _battery),
        Attribute("release_year", "release year",
                  ("was released in {v}", "came out in {v}", "launched in {v}", "first went on sale in {v}"),
                  ("The release year of {ref} is {v}.", "It was in {v} that {ref} reached stores."),
                  lambda rng, kind, name: str(rng.randrange(2014, 2026))),
        Attribute("color", "color",
                  ("comes in {v}", "is finished in {v}", "is offered in {v}"),
                  ("The finish of {ref} is {v}.", "Buyers of {ref} get it in {v}."),
                  lambda rng, kind, name: rng.choice(("graphite grey", "midnight blue", "silver", "forest green", "rose gold",
                                                      "matte black", "arctic white", "copper", "sand beige", "crimson red",
                                                      "slate blue", "olive green"))),
        Attribute("warranty", "warranty",
                  ("comes with a warranty of {v}", "is covered by a warranty of {v}", "carries a warranty of {v}"),
                  ("The warranty on {ref} runs for {v}.", "The manufacturer backs {ref} with a warranty of {v}."),
                  lambda rng, kind, name: rng.choice(("one year", "two years", "three years", "five years", "12 months",
                                                      "18 months", "24 months", "36 months"))),
        Attribute("storage", "storage",
                  ("ships with {v} of storage", "offers {v} of storage", "includes {v} of built-in storage"),
                  ("Storage on {ref} amounts to {v}.", "The base configuration of {ref} has {v} of storage."), _storage),
        Attribute("country", "country of manufacture",
                  ("is manufactured in {v}", "is made in {v}", "is assembled in {v}"),
                  ("The country of manufacture for {ref} is {v}.", "Production of {ref} takes place in {v}."),
                  lambda rng, kind, name: rng.choice(("Taiwan", "South Korea", "Vietnam", "Germany", "Japan", "Mexico",
                                                      "Malaysia", "China", "India", "the Czech Republic", "Poland",
                                                      "Portugal", "Thailand", "Hungary"))),
        Attribute("screen_size", "screen size",
                  ("has a screen measuring {v}", "features a display of {v}", "has a display that measures {v}"),
                  ("The screen of {ref} measures {v} diagonally.", "Measured diagonally, the display of {ref} spans {v}."),
                  _screen),
    ),
    person=False,
    make_name=product_name,
    near_duplicate=product_near_duplicate,
    intros=(
        "{N} is {a_kind} that {clause}.",
        "{N}, {a_kind}, {clause}.",
        "Among the {kinds} covered here is {n}, which {clause}.",
        "Next on the list is {n}, {a_kind} that {clause}.",
        "{N} is {a_kind}.",
        "We also looked at {n}, {a_kind}.",
        "Our reviewers spent a week with {n}, {a_kind} that {clause}.",
        "{N} belongs to the {kinds} in this roundup.",
    ),
    remarks=(
        "{Ref} drew praise for {poss} solid build quality.", "Reviewers found {poss} setup process painless.",
        "{Ref} ships with a short printed guide.", "Some testers wished {poss} charger were smaller.",
        "{Ref} received a firmware update shortly after launch.", "Stock of {ref} was limited in the first weeks.",
    ),
    use_article=True,
)

# ---------------------------------------------------------------------------------------------
# Medical professional records

_SPECIALTY = {
    "physician": ("cardiology", "neurology", "oncology", "pediatrics", "dermatology", "endocrinology", "gastroenterology",
                  "rheumatology", "nephrology", "geriatric medicine", "infectious diseases", "pulmonology"),
    "registered nurse": ("critical care nursing", "pediatric nursing", "oncology nursing", "emergency nursing",
                         "neonatal care", "palliative care", "surgical nursing"),
    "pharmacist": ("clinical pharmacy", "oncology pharmacy", "hospital pharmacy", "geriatric pharmacy",
                   "community pharmacy", "pediatric pharmacy"),
    "physiotherapist": ("sports rehabilitation", "neurological rehabilitation", "orthopedic physiotherapy",
                        "cardiopulmonary physiotherapy", "pediatric physiotherapy"),
    "dentist": ("orthodontics", "endodontics", "periodontics", "pediatric dentistry", "oral surgery", "prosthodontics"),
}
_LICENSE_PREFIX = {"physician": "MD", "registered nurse": "RN", "pharmacist": "RPh", "physiotherapist": "PT", "dentist": "DDS"}


def _workplace(rng, kind, name):
    place = rng.choice(PLACES)
    if kind == "pharmacist":
        kinds = ("Pharmacy", "General Hospital", "Medical Center")
    elif kind == "dentist":
        kinds = ("Dental Clinic", "Dental Practice", f"Children{APOS}s Hospital")
    elif kind == "physiotherapist":
        kinds = ("Rehabilitation Centre", "Sports Medicine Clinic", "General Hospital")
    else:
        kinds = ("General Hospital", "Medical Center", "Community Clinic", "University Hospital", f"Children{APOS}s Hospital")
    return f"{place} {rng.choice(kinds)}"


def _license(rng, kind, name):
    p = _LICENSE_PREFIX.get(kind, "LIC")
    d = rng.randrange(10000, 1000000)
    return _fmt(rng, "license", [f"{p}-{d}", f"{p}-{d}", f"{p} {d}", f"{p}{d}"])


def _experience(rng, kind, name):
    n = rng.randrange(2, 39)
    return _fmt(rng, "experience", [f"{n} years", f"{num_words(n)} years"])


def _school(rng, kind, name):
    place = rng.choice(PLACES + tuple(CITIES[:12]))
    return rng.choice([f"University of {place}", f"{place} Medical School", f"{place} Institute of Health Sciences",
                       f"{place} College of Health Professions"])


def _phone(rng, kind, name):
    a, b, c = rng.randrange(200, 999), rng.randrange(200, 999), rng.randrange(1000, 9999)
    return _fmt(rng, "phone", [f"({a}) {b}-{c}", f"{a}-{b}-{c}", f"+1 {a} {b} {c}"])


MEDICAL = Domain(
    name="medical",
    headings=("Medical professional records", "Regional health workforce register", "Clinical staff directory and notes"),
    kinds=(
        Kind("physician", "physicians", ("the physician", "the doctor")),
        Kind("registered nurse", "registered nurses", ("the nurse",)),
        Kind("pharmacist", "pharmacists", ("the pharmacist",)),
        Kind("physiotherapist", "physiotherapists", ("the physiotherapist", "the therapist")),
        Kind("dentist", "dentists", ("the dentist",)),
    ),
    attributes=(
        Attribute("specialty", "specialty",
                  ("specializes in {v}", "practices {v}", "works in {v}", "has focused on {v} for most of {poss} career"),
                  ("The specialty of {ref} is {v}.", "Colleagues know {ref} for work in {v}."),
                  lambda rng, kind, name: rng.choice(_SPECIALTY.get(kind, ("general practice",)))),
        Attribute("workplace", "workplace",
                  ("works at {v}", "is on staff at {v}", "holds a position at {v}", "sees patients at {v}"),
                  ("The workplace of {ref} is {v}.", "Patients can find {ref} at {v}."), _workplace),
        Attribute("years_of_experience", "years of experience",
                  ("has {v} of experience", "has been practicing for {v}", "brings {v} of experience to the job"),
                  ("The record credits {ref} with {v} of experience.", "Years of experience for {ref}: {v}."), _experience),
        Attribute("license_number", "license number",
                  ("holds license number {v}", "is registered under license {v}", "practices under license {v}"),
                  ("The license number of {ref} is {v}.", "The register lists {ref} under license {v}."), _license),
        Attribute("city", "city",
                  ("is based in {v}", "lives and works in {v}", "practices in {v}"),
                  ("The city listed for {ref} is {v}.", "The register places {ref} in {v}."),
                  lambda rng, kind, name: rng.choice(CITIES)),
        Attribute("school", "school",
                  ("trained at {v}", "graduated from {v}", "completed {poss} training at {v}"),
                  ("The school attended by {ref} was {v}.", "The register shows that {ref} graduated from {v}."), _school),
        Attribute("phone", "phone number",
                  ("can be reached at {v}", "takes calls at {v}", "lists {v} as {poss} contact number"),
                  ("The phone number of {ref} is {v}.", "To reach {ref}, call {v}."), _phone),
    ),
    person=True,
    make_name=lambda rng, kind: person_name(rng),
    near_duplicate=person_near_duplicate,
    intros=(
        "{N} is {a_kind} who {clause}.",
        "{N}, {a_kind}, {clause}.",
        "The register lists {n} as {a_kind} who {clause}.",
        "Among the {kinds} on file is {n}, who {clause}.",
        "{N} is {a_kind}.",
        "Record for {n}: {a_kind}.",
        "{N} joined the register as {a_kind} and {clause}.",
    ),
    remarks=(
        "{Ref} is known for a calm bedside manner.", "{Ref} mentors junior staff on weekday mornings.",
        "{Ref} volunteered during last winter\u2019s flu season.", "Patients often praise {poss} clear explanations.",
        "{Ref} sits on the hospital\u2019s ethics committee.", "{Ref} recently completed a refresher course.",
    ),
)

# ---------------------------------------------------------------------------------------------
# Organizational records

_ORG_SUFFIX = {
    "company": ("Logistics", "Systems", "Holdings", "Industries", "Foods", "Energy", "Analytics", "Robotics", "Textiles", "Group"),
    "nonprofit": ("Foundation", "Trust", "Alliance", "Society", "Relief Fund", "Conservancy"),
    "university": ("University", "Institute of Technology", "College", "School of Economics"),
    "government agency": ("Transit Authority", "Water Board", "Planning Office", "Statistics Bureau", "Housing Agency"),
    "cooperative": ("Growers Cooperative", "Credit Union", "Dairy Cooperative", "Housing Cooperative"),
}
_SECTOR = {
    "company": ("logistics", "renewable energy", "food processing", "industrial robotics", "textiles", "software",
                "freight shipping", "consumer goods"),
    "nonprofit": ("wildlife conservation", "literacy programs", "disaster relief", "public health", "youth sports",
                  "refugee support"),
    "university": ("higher education", "engineering research", "medical research", "agricultural science"),
    "government agency": ("public transport", "water management", "urban planning", "official statistics", "social housing"),
    "cooperative": ("dairy farming", "fruit growing", "community banking", "cooperative housing"),
}
_TLD = {"company": "com", "nonprofit": "org", "university": "edu", "government agency": "gov", "cooperative": "coop"}


def org_name(rng: random.Random, kind: str) -> str:
    root = rng.choice(ROOTS)
    suffix = rng.choice(_ORG_SUFFIX.get(kind, ("Group",)))
    if kind == "university" and rng.random() < 0.4:
        return f"University of {root}"
    if kind == "government agency" and rng.random() < 0.5:
        return f"{rng.choice(PLACES)} {suffix}"
    if rng.random() < 0.3:
        root = f"{root} {rng.choice(('North', 'Valley', 'Coastal', 'United', 'Central', 'Highland'))}"
    return f"{root} {suffix}"


def org_near_duplicate(rng: random.Random, name: str, kind: str) -> str:
    words = name.split()
    root = words[0] if words[0] != "University" else words[-1]
    suffixes = _ORG_SUFFIX.get(kind, ("Group",))
    # A twin of another kind must carry that kind's suffix, or the name would contradict the prose.
    if rng.random() < 0.5 or not any(name.endswith(s) for s in suffixes):
        return f"{root} {rng.choice(_ORG_SUFFIX.get(kind, ('Group',)))}"
    return name.replace(root, root + rng.choice(("s", "e", " & Sons", " International")), 1)


def _budget(rng, kind, name):
    cur = rng.choice(["$", "$", "€", "£"])
    if rng.random() < 0.35:
        return f"{cur}{_trim(rng.uniform(1.1, 9.9), 1)} billion"
    n = rng.randrange(3, 950)
    return _fmt(rng, "budget", [f"{cur}{n} million", f"{n} million {'dollars' if cur == '$' else 'euros' if cur == '€' else 'pounds'}"])


def _employees(rng, kind, name):
    n = rng.choice([rng.randrange(12, 100), rng.randrange(100, 5000), rng.randrange(5000, 250000)])
    if n < 100 and rng.random() < 0.5:
        return num_words(n)
    return f"{n:,}"


def _website(rng, kind, name):
    return f"www.{_slug(name)}.{_TLD.get(kind, 'com')}"


ORGANIZATIONS = Domain(
    name="organizations",
    headings=("Organizational records", "Registry of organisations: annual filings digest", "Institutional directory notes"),
    kinds=(
        Kind("company", "companies", ("the company", "the firm")),
        Kind("nonprofit", "nonprofits", ("the nonprofit", "the charity")),
        Kind("university", "universities", ("the university", "the institution")),
        Kind("government agency", "government agencies", ("the agency",)),
        Kind("cooperative", "cooperatives", ("the cooperative", "the co-op")),
    ),
    attributes=(
        Attribute("founded", "founding year",
                  ("was founded in {v}", "was established in {v}", "dates back to {v}", "opened its doors in {v}"),
                  ("The founding year of {ref} is {v}.", "Records show that {ref} was set up in {v}."),
                  lambda rng, kind, name: str(rng.randrange(1850, 2021))),
        Attribute("headquarters", "headquarters",
                  ("is headquartered in {v}", "has its headquarters in {v}", "runs its operations from {v}"),
                  ("The headquarters of {ref} are in {v}.", "Visitors to {ref} head to {v}, where its main office sits."),
                  lambda rng, kind, name: rng.choice(CITIES)),
        Attribute("employees", "number of employees",
                  ("employs {v} people", "has a workforce of {v}", "has {v} employees on its payroll"),
                  ("The headcount of {ref} stands at {v}.", "Staff numbers at {ref} reached {v} this year."), _employees),
        Attribute("leader", "leader",
                  ("is led by {v}", "is headed by {v}", "has {v} at the helm", "is run by {v}"),
                  ("The leader of {ref} is {v}.", "Day-to-day management of {ref} falls to {v}."),
                  lambda rng, kind, name: person_name(rng)),
        Attribute("annual_budget", "annual budget",
                  ("has an annual budget of {v}", "operates on a yearly budget of {v}", "spends {v} a year"),
                  ("The annual budget of {ref} comes to {v}.", "Filings put the yearly budget of {ref} at {v}."), _budget),
        Attribute("sector", "sector",
                  ("operates in {v}", "is active in {v}", "works in the field of {v}"),
                  ("The sector of {ref} is {v}.", "Analysts group {ref} under {v}."),
                  lambda rng, kind, name: rng.choice(_SECTOR.get(kind, ("services",)))),
        Attribute("website", "website",
                  ("publishes its reports at {v}", "maintains a website at {v}", "can be found online at {v}"),
                  ("The website of {ref} is {v}.", "Information about {ref} is posted at {v}."), _website),
    ),
    person=False,
    make_name=org_name,
    near_duplicate=org_near_duplicate,
    intros=(
        "{N} is {a_kind} that {clause}.",
        "{N}, {a_kind}, {clause}.",
        "Filed under {kinds}: {n}, which {clause}.",
        "The registry describes {n} as {a_kind}.",
        "{N} is {a_kind}.",
        "Another entry concerns {n}, {a_kind} that {clause}.",
        "{N} registered as {a_kind} and {clause}.",
    ),
    remarks=(
        "{Ref} publishes a short newsletter each quarter.", "{Ref} renewed {poss} charter after a long review.",
        "{Ref} moved to a paperless filing system.", "Critics have questioned {poss} hiring policy.",
        "{Ref} hosts an open day every summer.", "{Ref} changed {poss} logo twice in a decade.",
    ),
)

# ---------------------------------------------------------------------------------------------
# Movie metadata

_T_ADJ = ("Silent", "Crimson", "Hollow", "Last", "Distant", "Broken", "Golden", "Hidden", "Restless", "Burning", "Quiet",
          "Forgotten", "Wandering", "Frozen", "Secret", "Velvet", "Iron", "Paper", "Midnight", "Northern")
_T_NOUN = ("Harbor", "Orchard", "Signal", "Tide", "Lantern", "Garden", "Frontier", "Mirror", "Winter", "River", "Crown",
           "Archive", "Meridian", "Compass", "Harvest", "Cathedral", "Station", "Ember", "Horizon", "Labyrinth", "Tower")
_T_NOUN2 = ("Marrow", "Salt", "Glass", "Ash", "Thunder", "Clay", "Smoke", "Stone", "Rain", "Dust", "Copper", "Ivory")
_STUDIO = ("Pictures", "Films", "Studios", "Entertainment", "Media", "Productions")
_GENRE = {
    "feature film": ("psychological thriller", "romantic comedy", "science fiction", "western", "crime drama",
                     "war epic", "political satire", "historical drama", "heist comedy", "horror"),
    "documentary": ("nature documentary", "true crime", "music documentary", "sports documentary",
                    "political documentary", "science documentary"),
    "television series": ("police procedural", "family drama", "sitcom", "medical drama", "fantasy", "legal drama"),
    "animated film": ("family adventure", "musical fantasy", "comedy", "fairy tale", "space adventure"),
    "short film": ("experimental drama", "comedy", "horror", "coming-of-age drama", "silent comedy"),
}


def movie_title(rng: random.Random, kind: str) -> str:
    a, n, n2 = rng.choice(_T_ADJ), rng.choice(_T_NOUN), rng.choice(_T_NOUN2)
    return rng.choice([f"The {a} {n}", f"{n} of {n2}", f"{a} {n}", f"The {n} of {n2}", f"A {n} in {rng.choice(CITIES)}",
                       f"{n2} and {n}", f"The {a} {n}s"])


def movie_near_duplicate(rng: random.Random, name: str, kind: str) -> str:
    r = rng.randrange(4)
    if r == 0:
        return name + rng.choice((" II", ": Part Two", " Returns", ": The Reckoning"))
    if r == 1:
        return name[4:] if name.startswith("The ") else "The " + name
    if r == 2:
        return name[:-1] if name.endswith("s") else name + "s"
    return name.replace(" of ", " in ", 1) if " of " in name else name + " Reborn"


def _runtime(rng, kind, name):
    lo, hi = {"feature film": (84, 176), "documentary": (68, 131), "television series": (22, 61),
              "animated film": (74, 111), "short film": (7, 36)}.get(kind, (80, 150))
    m = rng.randrange(lo, hi)
    if m >= 60 and rng.random() < 0.4:
        h, mm = divmod(m, 60)
        return f"{h} hour{'s' if h > 1 else ''}" + (f" {mm} minutes" if mm else "")
    return _fmt(rng, "runtime", [f"{m} minutes", f"{m} minutes", f"{m} min"])


def _money_film(rng, kind, name):
    if kind in ("short film", "documentary") and rng.random() < 0.6:
        return f"${rng.randrange(40, 990) * 1000:,}"
    if rng.random() < 0.2:
        return f"${_trim(rng.uniform(1.0, 2.6), 1)} billion"
    n = rng.randrange(2, 320)
    return _fmt(rng, "box_office", [f"${n} million", f"{n} million dollars", f"${_trim(n / 10, 1)} million"])


MOVIES = Domain(
    name="movies",
    headings=("Movie metadata notes", "Film and television catalogue excerpts", "Screen archive: programme notes"),
    kinds=(
        Kind("feature film", "feature films", ("the film", "the picture")),
        Kind("documentary", "documentaries", ("the documentary", "the film")),
        Kind("television series", "television series", ("the series", "the show")),
        Kind("animated film", "animated films", ("the animated feature", "the film")),
        Kind("short film", "short films", ("the short", "the film")),
    ),
    attributes=(
        Attribute("director", "director",
                  ("was directed by {v}", "is helmed by {v}", "comes from director {v}"),
                  ("The director of {ref} is {v}.", "Behind the camera for {ref} was {v}."),
                  lambda rng, kind, name: person_name(rng)),
        Attribute("release_year", "release year",
                  ("was released in {v}", "premiered in {v}", "reached screens in {v}"),
                  ("The release year of {ref} is {v}.", "Audiences first saw {ref} in {v}."),
                  lambda rng, kind, name: str(rng.randrange(1950, 2026))),
        Attribute("runtime", "runtime",
                  ("runs {v}", "has a running time of {v}", "clocks in at {v}"),
                  ("The runtime of {ref} is {v}.", "From first frame to last, {ref} lasts {v}."), _runtime),
        Attribute("budget", "budget",
                  ("was made on a budget of {v}", "cost {v} to produce", "had a production budget of {v}"),
                  ("The budget of {ref} was {v}.", "Producers spent {v} on {ref}."), _money_film),
        Attribute("genre", "genre",
                  ("belongs to the {v} genre", "is classified as {v}", "is billed as {v}"),
                  ("The genre of {ref} is {v}.", "Critics file {ref} under {v}."),
                  lambda rng, kind, name: rng.choice(_GENRE.get(kind, ("drama",)))),
        Attribute("lead_actor", "lead actor",
                  ("stars {v}", "features {v} in the leading role", "has {v} in the lead"),
                  ("The lead actor of {ref} is {v}.", "Top billing in {ref} went to {v}."),
                  lambda rng, kind, name: person_name(rng)),
        Attribute("studio", "studio",
                  ("was produced by {v}", "comes from {v}", "was backed by {v}"),
                  ("The studio behind {ref} is {v}.", "Production of {ref} was handled by {v}."),
                  lambda rng, kind, name: f"{rng.choice(ROOTS)} {rng.choice(_STUDIO)}"),
        Attribute("box_office", "box office gross",
                  ("grossed {v}", "took {v} at the box office", "earned {v} in ticket sales"),
                  ("The box office gross of {ref} was {v}.", "Ticket sales for {ref} totalled {v}."), _money_film),
    ),
    person=False,
    make_name=movie_title,
    near_duplicate=movie_near_duplicate,
    intros=(
        "{N} is {a_kind} that {clause}.",
        "{N}, {a_kind}, {clause}.",
        "Among the {kinds} in the catalogue is {n}, which {clause}.",
        "Next comes {n}, {a_kind} that {clause}.",
        "{N} is {a_kind}.",
        "The archive holds {n}, {a_kind}.",
        "Programmers selected {n}, {a_kind} that {clause}.",
    ),
    remarks=(
        "{Ref} drew mixed reviews at its premiere.", "{Ref} was restored from the original negatives.",
        "Critics singled out {poss} score for praise.", "{Ref} found a second life on home video.",
        "{Ref} screened at several regional festivals.", "Some viewers found {poss} ending abrupt.",
    ),
)

DOMAINS: dict[str, Domain] = {d.name: d for d in (PRODUCTS, MEDICAL, ORGANIZATIONS, MOVIES)}
