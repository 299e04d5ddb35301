"""Deterministic filler prose: varied, fact-free sentences used to pad prompts to a target length.

Filler must not look like the facts a task asks about (no entity names, no attribute values), yet it
should read like text, not like a repeated line, so that long prompts are not trivially compressible.
Sentences are assembled from templates and word lists; a seeded `random.Random` makes the stream
reproducible. Topics add domain flavour (the Text2JSON domains) on top of a general vocabulary.
Two styles (`FILLER_STYLES`): "templates", the original small grammar, and "rich", a much larger one (see below).

RULER's classic "noise" haystack (the same five sentences repeated) is `noise_sentences`.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator

FILLER_STYLES = ("templates", "rich")

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


# -- "rich" style ---------------------------------------------------------------------------------------
# At 16k tokens the small grammar above repeats the same claims and outcomes dozens of times, which may push
# a small model into repetition loops when it later writes a long answer. The "rich" style tested that
# hypothesis: a recursive grammar whose slots are short and combine freely, so word 4-grams rarely recur. On the
# H200 it did not change the 1.5B's loop rate at 16k (benchmarks/README.md, Text2JSON search 8); it stays as the
# less repetitive option.
# Like the small grammar it is fact-free: no digits or number words, no units or currency, no names or
# capitalised words after the first, no quotes or brackets, and none of the Text2JSON kind nouns, attribute
# labels or attribute values (products, medical staff, organizations, movies), since the filler surrounds them.
# Any "{slot}" inside a template or a list entry is expanded recursively from `_RICH` (+ a topic's lists);
# entries that are repeated are simply weighted more.
_RICH = {
    # -- when and where
    "time": [
        "last spring", "in the early seasons", "during the long winter", "by the end of that summer",
        "for most of living memory", "in recent times", "every so often", "at the turn of the season",
        "later that autumn", "within a generation", "not long afterwards", "before the reforms", "after the floods",
        "in the seasons that followed", "early on", "over time", "in those times", "at the height of summer",
        "during the wet season", "long before the new road", "soon after the thaw", "in quieter times",
        "around harvest time", "in the lean seasons", "by late winter", "for a good while", "as the nights drew in",
        "in the busy season", "when the river was high", "after the market moved", "during the dry spell",
        "in more hopeful times", "for generations", "until fairly recently", "at some point", "eventually",
        "in the end", "somewhat later", "meanwhile", "in the meantime", "on quiet evenings", "most mornings",
        "now and then", "from time to time", "by the following spring", "before anybody noticed",
        "in the lull after the storms", "throughout the cold season", "when the roads reopened", "as spring came on",
    ],
    "padj": [
        "northern", "southern", "eastern", "upper", "lower", "old", "outer", "inner", "quiet", "busy", "windswept",
        "sheltered", "sunny", "muddy", "narrow", "crowded", "sleepy", "far", "nearer", "outlying", "rundown",
        "leafy", "hilly", "low-lying", "newer", "older", "neglected", "tidy",
    ],
    "pnoun": [
        "valley", "harbour", "quarter", "lanes", "meadows", "terraces", "ridge", "shore", "docks", "market square",
        "hamlets", "parishes", "suburbs", "farms", "moors", "wharves", "marshes", "slopes", "river crossings",
        "villages", "market towns", "coast", "heath", "estuary", "islands", "back streets", "orchards", "uplands",
        "pastures", "mill towns", "canal towns", "fishing villages", "districts", "border villages", "hill towns",
        "riverbank", "valley floor", "town edge", "crossroads", "high street", "waterfront", "allotments", "commons",
    ],
    "place": ["the {padj} {pnoun}", "the {padj} {pnoun}", "the {padj} {pnoun}", "the {pnoun}"],
    # -- who
    "gdet": [
        "some", "several", "a few", "most", "many", "a handful of", "a group of", "a circle of", "a small band of",
        "plenty of", "certain", "the local", "the regional", "a scattering of", "various", "countless",
        "a loose network of", "the",
    ],
    "gadj": [
        "independent", "seasoned", "retired", "veteran", "amateur", "curious", "skeptical", "patient", "busy",
        "weary", "cautious", "well-read", "outspoken", "quiet", "travelling", "thoughtful", "stubborn", "earnest",
        "restless", "meticulous", "cheerful", "opinionated", "diligent", "wandering", "unassuming", "keen",
    ],
    "gnoun": [
        "historians", "researchers", "teachers", "editors", "volunteers", "scholars", "analysts", "residents",
        "skeptics", "gardeners", "surveyors", "carpenters", "librarians", "archivists", "engineers", "planners",
        "farmers", "shopkeepers", "musicians", "students", "travellers", "walkers", "craftspeople", "bakers",
        "potters", "weavers", "builders", "neighbours", "commentators", "observers", "columnists", "storytellers",
        "organisers", "caretakers", "inspectors", "clerks", "mapmakers", "sailors", "beekeepers", "naturalists",
        "printers", "tailors", "cooks", "parents", "apprentices", "elders", "newcomers", "commuters", "cyclists",
        "innkeepers", "shepherds", "stonemasons", "bookbinders", "clockmakers", "fishers", "boatbuilders",
        "millers", "gossips", "correspondents", "essayists", "chroniclers", "lecturers",
    ],
    "group": [
        "{gdet} {gnoun}", "{gdet} {gnoun}", "{gdet} {gadj} {gnoun}", "{gadj} {gnoun}", "{gnoun} from {place}",
        "the {gnoun} of {place}", "{gnoun} and {gnoun}", "{gadj} {gnoun} from {place}",
    ],
    "people": [
        "{gnoun}", "{gnoun}", "{gadj} {gnoun}", "visitors", "children", "pupils", "pilgrims", "hikers",
        "porters", "drivers", "dockworkers", "passers-by", "market traders", "ferry crews", "lodgers",
    ],
    # -- doing what to what
    "verb": [
        "revisited", "questioned", "documented", "debated", "reconsidered", "mapped", "summarised", "praised",
        "criticised", "catalogued", "examined", "championed", "overlooked", "reinterpreted", "compared", "studied",
        "traced", "defended", "dismissed", "sketched", "described", "recorded", "surveyed", "explored",
        "puzzled over", "argued about", "wrote about", "returned to", "kept track of", "rediscovered", "neglected",
        "admired", "doubted", "explained", "simplified", "exaggerated", "illustrated", "annotated", "restored",
        "preserved", "rebuilt", "mended", "reorganised", "celebrated", "mocked", "wondered about", "lectured on",
        "drew attention to", "made sense of", "pieced together", "took a fresh look at", "kept coming back to",
        "quietly ignored", "looked again at", "challenged", "endorsed", "romanticised", "underestimated",
        "misread", "collected stories about", "grumbled about", "fussed over", "tidied up", "sorted through",
    ],
    "pverb": [
        "revisit", "question", "document", "debate", "map", "praise", "criticise", "examine", "champion",
        "overlook", "compare", "study", "trace", "defend", "dismiss", "describe", "record", "notice", "explore",
        "admire", "doubt", "explain", "simplify", "exaggerate", "preserve", "restore", "celebrate", "ignore",
        "misread", "underestimate", "romanticise", "remember", "forget", "discuss", "care about", "worry about",
        "talk about", "write about", "argue over", "return to", "look back on", "make light of", "puzzle over",
    ],
    "gerund": [
        "debating", "questioning", "mapping", "praising", "criticising", "studying", "ignoring", "documenting",
        "defending", "restoring", "describing", "collecting stories about", "arguing over", "talking about",
        "puzzling over", "tidying up", "sketching", "admiring", "mending", "cataloguing",
    ],
    "oadj": [
        "old", "forgotten", "quiet", "shifting", "overlooked", "familiar", "curious", "uneven", "tangled", "patchy",
        "slow", "modest", "peculiar", "stubborn", "fading", "long-standing", "unwritten", "informal", "seasonal",
        "everyday", "neglected", "humble", "restless", "hidden", "crowded", "orderly", "untidy", "fragile",
        "sturdy", "weathered", "makeshift", "lingering", "scattered", "gentle", "awkward", "sprawling", "narrow",
    ],
    "onoun": [
        "habits", "history", "customs", "records", "rhythm", "state", "songs", "accounts", "gardens", "layout",
        "maps", "letters", "routines", "memory", "legends", "boundaries", "paths", "rituals", "style", "folklore",
        "traditions", "lanes", "bridges", "courtyards", "workshops", "festivals", "rumours", "quarrels", "ledgers",
        "footpaths", "kitchens", "rooftops", "hedgerows", "fences", "wells", "orchards", "signposts", "meeting halls",
        "notices", "timetables", "almanacs", "storerooms", "stairways", "noticeboards", "cellars", "lamps",
    ],
    "ocomp": [
        "{place}", "{place}", "{place}", "{place}", "small workshops", "rival families", "travelling players",
        "early travellers", "the fishing fleet", "the covered market", "the parish", "the old guilds",
        "the river trade", "the ferry", "the mill", "the boatyards", "the almshouses", "the town band", "the carters",
        "the night watch", "the lamplighters", "the village choir", "the harvest fair", "the salt works",
    ],
    "remnant": [
        "what remained of", "what was left of", "what survived of", "the last traces of", "the remnants of",
        "whatever is left of", "the ruins of", "the memory of",
    ],
    "object": [
        "the {onoun} of {ocomp}", "the {onoun} of {ocomp}", "the {oadj} {onoun} of {ocomp}",
        "the {oadj} {onoun} in {place}", "{remnant} {ocomp}", "the {oadj} {onoun} behind {ocomp}",
        "the {onoun} and {onoun} of {ocomp}", "{ocomp}", "the {oadj} {onoun}", "the way {ocomp} changed",
        "the {onoun} along {place}", "the {onoun} near {place}",
    ],
    # -- what people claim
    "csubj": [
        "small changes", "modest experiments", "careful observers", "old habits", "good records", "shared meals",
        "quiet efforts", "simple tools", "local customs", "patient efforts", "clear questions", "written notes",
        "old buildings", "slow reforms", "honest mistakes", "long walks", "informal networks", "ordinary people",
        "everyday routines", "small gestures", "written rules", "open discussions", "neighbourly favours",
        "familiar routes", "shared stories", "careful plans", "hasty decisions", "good intentions",
        "public meetings", "old maps", "rumours", "traditions", "early impressions", "local legends",
        "seasonal rhythms", "practical skills", "unwritten rules", "hand-me-down tools", "casual conversations",
        "repaired things", "well-worn paths", "borrowed ideas", "grand plans", "tidy explanations",
    ],
    "cadv": [
        "often", "usually", "rarely", "seldom", "mostly", "sometimes", "nearly always", "still", "generally",
        "tend to", "in practice", "quietly", "eventually",
    ],
    "cverb": [
        "matter more than", "outlast", "shape", "reveal more than", "say more about", "depend on", "reward",
        "travel further than", "outlive", "carry more authority than", "settle more disputes than", "outweigh",
        "explain more than", "hide", "undo", "survive", "change faster than", "tell us more than", "build on",
        "borrow from", "grow out of", "owe a great deal to", "push aside", "make room for", "lean on",
        "stand in for", "draw on", "give way to", "get confused with", "teach more than",
    ],
    "cobj": [
        "grand plans", "official notices", "the people who started them", "any reform", "careful study",
        "the weather", "the present", "the past", "written rules", "formal training", "speeches", "the calendar",
        "old rivalries", "tidy explanations", "patient upkeep", "good luck", "local pride", "the archives",
        "public opinion", "the loudest voices", "common sense", "long memories", "fashion", "the landscape",
        "quiet persistence", "shared meals", "small favours", "the institutions around them", "expert advice",
        "eyewitness accounts", "written records", "the seasons", "habit", "the harvest",
    ],
    "cpred": [
        "{cverb} {cobj}", "{cverb} {cobj}", "{cverb} {cobj}", "{cverb} {cobj}", "{cadv} {cverb} {cobj}",
        "{cadv} {cverb} {cobj}", "{cadv} {cverb} {cobj}", "{cpred_fixed}",
    ],
    "cpred_fixed": [
        "are easy to underestimate", "resist tidy explanations", "need a patient audience",
        "grow in ways nobody predicts", "bend rather than break", "shift with each generation",
        "become invisible when they work", "are only noticed when they fail", "age better than anybody expects",
        "leave traces in unlikely places", "are learned by watching rather than reading",
    ],
    "claim": [
        "{csubj} {cpred}", "{csubj} {cpred}", "{csubj} {cpred}", "{csubj} {cpred}", "in {place}, {csubj} {cpred}",
        "{csubj} in {place} {cpred}", "{csubj} {cpred}, {notably} {place}",
    ],
    "notably": [
        "at least in", "certainly in", "especially in", "above all in", "notably in", "as anywhere in",
        "or so it seems in", "not least in",
    ],
    # -- hedges
    "qsubj": [
        "the evidence", "the record", "the overall view", "the surviving sources", "the debate", "the archive",
        "the usual account", "the story", "the testimony", "the surviving notes", "the written record",
        "local memory", "the consensus", "the argument", "the common view", "the official version", "the tradition",
        "the paper trail", "the received wisdom", "the trail of letters", "the local lore", "the gossip",
    ],
    "qpred": [
        "remains incomplete", "keeps changing", "is far from settled", "is uneven", "depends on who is asking",
        "has gaps", "is patchy", "leaves much unsaid", "is open to other readings", "is still contested",
        "is thinner than it looks", "points several ways", "raises new questions", "was never fully checked",
        "is coloured by hindsight", "is hard to read", "tells only part of it", "has been retold too often",
        "rests on scattered letters", "was pieced together later", "is mostly hearsay", "shifts with every retelling",
        "is less tidy than it sounds", "owes much to guesswork", "is disputed", "contradicts itself",
    ],
    "qualifier": [
        "{qsubj} {qpred}", "{qsubj} {qpred}", "{qsubj} {qpred}", "{qsubj} about {object} {qpred}",
        "{qsubj} on {object} {qpred}", "{qsubj} {qpred}, as {gnoun} admit", "{gnoun} tell it differently",
    ],
    # -- what happened
    "eadj": [
        "sudden", "long", "quiet", "unexpected", "late", "early", "bitter", "brief", "gradual", "noisy", "hurried",
        "overdue", "modest", "turbulent", "belated", "disputed", "welcome", "unwelcome", "rainy", "strange",
        "awkward", "peaceful", "messy", "hasty", "cautious", "stormy",
    ],
    "enoun": [
        "shift", "delay", "revival", "closure", "flood", "storm", "drought", "thaw", "festival", "fair", "strike",
        "reform", "move", "renovation", "harvest", "migration", "dispute", "quarrel", "reopening", "procession",
        "exodus", "boom", "slump", "shortage", "glut", "rebuilding", "expansion", "decline", "celebration",
        "gathering", "detour", "relocation", "homecoming", "heatwave", "frost", "fire", "landslide", "truce",
    ],
    "event": [
        "a {eadj} {enoun}", "a {eadj} {enoun}", "the {eadj} {enoun} in {place}", "the {enoun} at {place}",
        "a {enoun} in {place}", "the {enoun} of {ocomp}", "a {eadj} {enoun} among {gnoun}",
        "the {eadj} {enoun} of {ocomp}",
    ],
    "osubj": [
        "the change", "life", "the mood", "the town", "the village", "the neighbourhood", "the market",
        "the community", "the valley", "the old order", "the arrangement", "trade", "the harbour", "the district",
        "daily life", "the custom", "the routine", "the parish", "the coast", "the whole street",
    ],
    "opred": [
        "proved lasting", "went on much as before", "slowly improved", "adapted quickly", "settled into a new rhythm",
        "recovered", "found a new balance", "was never quite the same", "grew quieter",
        "became livelier", "drifted back to old habits", "absorbed the shock", "carried on regardless",
        "changed in small ways", "turned out better than feared", "took a while to adjust", "found its footing again",
        "weathered the storm", "bounced back", "stayed much as it was", "looked different by spring",
        "came through mostly intact", "gained more than it lost", "lost some of its charm",
    ],
    "otail": [
        "soon enough", "in the end", "after a while", "before long", "by and large", "against expectations",
        "all the same", "for the most part", "without much fuss", "to general relief",
    ],
    "outcome": [
        "{osubj} {opred}", "{osubj} {opred}", "{osubj} {opred}", "{osubj} {opred} {otail}",
        "{osubj} in {place} {opred}", "{gnoun} adjusted {otail}",
    ],
    # -- odds and ends
    "adj": [
        "modest", "curious", "unexpected", "gradual", "familiar", "careful", "lively", "patient", "uneven", "steady",
        "quiet", "stubborn", "gentle", "odd", "persistent", "subtle", "uneasy", "hopeful", "cautious", "tentative",
        "wistful", "peculiar", "slow", "sudden", "faint", "deliberate", "lasting", "fragile", "restless", "plain",
        "durable", "awkward", "cheerful", "sober", "muted", "shrewd", "humble", "telling", "noticeable", "stray",
    ],
    "noun": [
        "change", "pattern", "tradition", "approach", "habit", "discussion", "practice", "shift", "routine",
        "debate", "tendency", "mood", "rhythm", "custom", "preference", "reluctance", "enthusiasm", "trend",
        "rivalry", "compromise", "arrangement", "revival", "drift", "caution", "optimism", "fondness", "unease",
        "curiosity", "nostalgia", "thrift", "pride", "stubbornness", "tolerance", "reticence", "impatience",
    ],
    "place_pred": [
        "grew quieter", "filled with visitors", "emptied early", "changed character", "kept an old-fashioned look",
        "drew newcomers", "slowly recovered", "became a meeting point", "took on a new look", "welcomed the change",
        "resisted the change", "stayed much the same", "felt crowded", "seemed asleep", "woke up again",
        "attracted attention", "faded from view", "grew busier", "turned inward", "lost the old workshops",
        "gained a reputation for hospitality", "went quiet", "fell out of fashion", "came back into fashion",
    ],
    "obj_pred": [
        "drew little notice", "went largely unnoticed", "changed little", "attracted curious visitors",
        "gave rise to endless debate", "slipped out of memory", "came back into view", "puzzled newcomers",
        "outlasted every critic", "survived against the odds", "fell into neglect", "gained a quiet following",
        "set the tone for what followed", "became a local joke", "inspired a fond loyalty",
        "made little sense to outsiders",
    ],
    "noun_pred": [
        "was hard to miss", "went unremarked", "deepened", "faded", "spread quietly", "puzzled outsiders",
        "lingered", "surprised everyone", "eased over time", "became a habit of its own",
    ],
    "rose": [
        "rose", "faded", "grew steadily", "revived", "waned", "spread", "dwindled", "came and went", "never quite died",
    ],
    "source": [
        "scattered letters", "old diaries", "word of mouth", "church records", "faded sketches",
        "conversations at the market", "the margins of old ledgers", "the diaries of travellers", "local songs",
        "the notes of long meetings", "the notes of a patient clerk", "stories told by {gnoun}",
    ],
    "story": [
        "a tale of decline", "a quiet success", "a slow revival", "a cautionary tale", "a local legend",
        "a tale of rivalry", "a story of patience", "a muddle of good intentions", "a tale of stubborn pride",
        "a lesson in thrift", "a small triumph", "a story about luck",
    ],
    "told": [
        "usually told", "often remembered", "sometimes recast", "mostly retold", "still read", "best understood",
        "often framed", "locally remembered",
    ],
    "stance": [
        "mostly out of habit", "with some reluctance", "with real affection", "without much enthusiasm",
        "for reasons of their own", "more out of curiosity than duty", "with quiet pride",
        "with a certain weariness", "as their elders did", "whenever the weather allows", "as if nothing had changed",
    ],
    # -- sentence frames
    "deny": [
        "few would deny that", "hardly anybody disputes that", "most would agree that", "it is widely held that",
        "it seems fair to say that", "it is generally accepted that", "there is little doubt that",
        "it is often said that", "the usual view is that", "the old saying goes that", "it is no secret that",
        "it is tempting to think that",
    ],
    "argue": [
        "have long argued that", "keep insisting that", "like to point out that", "have often noted that",
        "maintain that", "suspect that", "never tire of saying that", "quietly believe that", "concede that",
        "have come to think that", "like to remind visitors that", "doubt that",
    ],
    "found": [
        "found that", "concluded that", "realised that", "suspected that", "learned that", "noticed that",
        "came to see that", "decided that",
    ],
    "per": ["according to", "in the view of", "in the eyes of", "as reported by", "judging by", "to hear"],
    "say": ["say", "claim", "believe", "insist", "would have it", "like to think", "tell visitors", "maintain"],
    "news": [
        "is hardly news to", "comes as no surprise to", "will not surprise", "is old news to", "is well known among",
        "is taken for granted by",
    ],
    "qopen": [
        "is it true that", "could it be that", "is it really the case that", "should we believe that",
        "is it fair to say that", "must we accept that", "do {gnoun} really think that",
        "why do {gnoun} insist that", "how can {gnoun} be sure that",
    ],
    "foresee": ["who could have foreseen", "who would have predicted", "did anybody expect", "was anybody ready for"],
    "clearer": ["clearer", "plainer", "more obvious", "more evident", "easier to see"],
    "conn": [
        " while", " because", ", even though", "; meanwhile,", ", and yet", ", although", ", whereas", "; still,",
        "; even so,", "; by contrast,", ", but", "; in the meantime,", "; at the same time,", " just as", ", since",
        "; in any case,", "; on the other hand,", ", though", "; elsewhere,", "; in much the same way,", ", so",
        " and", "; for their part,", "; all the while,",
    ],
    "clause": [
        "{group} {verb} {object}", "{group} {verb} {object}", "{group} {verb} {object} in {place}", "{claim}",
        "{qualifier}", "{outcome}", "{people} in {place} {verb} {object}", "{place} {place_pred}",
        "{object} {obj_pred}", "interest in {object} {rose}", "{group} went on {gerund} {object}",
        "the {adj} {noun} among {people} {noun_pred}",
    ],
}

# Domain flavour for the rich style, mixed into `_RICH` (listed twice, like `_TOPICS`). These lists avoid the
# domain's kind nouns ("the film", "the agency", "the nurse", ...), attribute labels and attribute values.
_RICH_TOPICS = {
    "products": {
        "gnoun": [
            "retail buyers", "hardware reviewers", "warehouse managers", "consumer advocates", "product designers",
            "repair technicians", "shop assistants", "delivery drivers", "bargain hunters", "early adopters",
            "returns clerks", "packaging designers", "trade fair visitors", "hobbyist tinkerers", "support agents",
            "procurement officers", "store managers", "gadget bloggers", "industrial designers", "quality inspectors",
        ],
        "onoun": [
            "packaging", "spare parts", "return policies", "firmware updates", "shelf arrangements", "user manuals",
            "repair guides", "product launches", "trade fairs", "gift seasons", "shipping crates", "assembly lines",
            "loyalty schemes", "catalogues", "showrooms", "unboxing rituals", "accessory aisles", "product recalls",
            "stock counts", "clearance sales",
        ],
        "pnoun": [
            "loading docks", "showroom floors", "warehouse aisles", "repair counters", "outlet stores",
            "trade fair halls", "assembly halls", "returns desks", "stockrooms", "shopping arcades",
            "distribution centres", "test benches",
        ],
        "csubj": [
            "repair guides", "product launches", "loyalty schemes", "spare parts", "sturdy hinges", "clear manuals",
            "return policies", "clever packaging", "design tweaks", "gadget fads", "honest reviews", "quiet updates",
            "patient support agents", "well-stocked shelves", "shoppers", "reliable goods",
        ],
        "cobj": [
            "novelty", "brand loyalty", "flashy launches", "the marketing calendar", "glossy adverts",
            "the supply chain", "the returns desk", "early reviews", "shelf appeal", "the holiday rush",
        ],
        "enoun": [
            "holiday rush", "recall", "clearance sale", "product launch", "stock shortage", "redesign",
            "shortage of spare parts", "switch to recycled packaging", "warehouse flood", "launch season",
        ],
        "osubj": [
            "the shop floor", "the supply chain", "the warehouse", "the catalogue", "the returns desk", "the trade",
        ],
    },
    "medical": {
        "gnoun": [
            "hospital administrators", "clinical educators", "patient advocates", "staffing coordinators",
            "ward clerks", "porters", "receptionists", "health inspectors", "medical librarians", "carers",
            "hospital volunteers", "union representatives", "trainees", "ward managers", "infection control teams",
            "admissions staff", "night staff", "rota planners", "patient councils", "clinical auditors",
        ],
        "onoun": [
            "rotas", "handovers", "waiting rooms", "referrals", "shift patterns", "ward rounds", "training sessions",
            "supply cupboards", "consent forms", "visiting rules", "break rooms", "case notes", "discharge routines",
            "triage desks", "staff canteens", "induction courses", "on-call arrangements", "appointment systems",
        ],
        "pnoun": [
            "night wards", "outpatient corridors", "rural clinics", "staff canteens", "supply rooms",
            "hospital car parks", "admissions desks", "training wards", "teaching rooms", "waiting areas",
            "recovery wards", "visiting lounges",
        ],
        "csubj": [
            "clear handovers", "calm waiting rooms", "tidy case notes", "well-planned rotas", "kind receptionists",
            "short queues", "training sessions", "ward rounds", "patient councils", "good induction courses",
            "careful referrals", "shared break rooms", "mentoring schemes", "tired teams",
        ],
        "cobj": [
            "new technology", "staff morale", "patient trust", "the night shift", "the paperwork",
            "rural clinics", "small warning signs", "every appointment", "the handover", "the rota",
        ],
        "enoun": [
            "winter surge", "rota change", "inspection", "refurbishment", "staffing gap", "ward move",
            "surge in admissions", "switch to electronic case notes", "staffing shortage", "inspection visit",
        ],
        "osubj": ["the ward", "the night shift", "the rota", "the waiting room", "morale", "the team"],
    },
    "organizations": {
        "gnoun": [
            "board members", "auditors", "regional regulators", "employee councils", "governance experts", "trustees",
            "committee secretaries", "shareholders", "grant reviewers", "compliance officers", "fundraisers",
            "union delegates", "policy advisers", "note takers", "procurement panels", "internal auditors",
            "strategy consultants", "members of the board", "donors", "ombudsmen",
        ],
        "onoun": [
            "reporting cycles", "tender rules", "advisory boards", "internal audits", "committee meetings", "charters",
            "bylaws", "mission statements", "grant applications", "organisation charts", "strategy papers",
            "staff retreats", "newsletters", "partnership agreements", "hiring rounds", "agendas", "audit trails",
            "voting procedures",
        ],
        "pnoun": [
            "boardrooms", "committee rooms", "back offices", "regional branches", "open-plan floors", "archive rooms",
            "reception halls", "meeting rooms", "filing rooms", "members lounges",
        ],
        "csubj": [
            "clear meeting notes", "short agendas", "open ballots", "internal audits", "strategy papers",
            "advisory boards", "mission statements", "partnership agreements", "grant applications", "staff retreats",
            "reorganisations", "honest newsletters", "mergers", "small teams", "committees",
        ],
        "cobj": [
            "public trust", "the agenda", "large departments", "the culture", "any strategy paper", "old grudges",
            "the annual report", "good governance", "the membership", "the audit trail",
        ],
        "enoun": [
            "merger", "restructuring", "audit", "board election", "rebranding", "funding round",
            "merger of rival offices", "surprise audit", "rebranding exercise", "move to open-plan offices",
        ],
        "osubj": ["the board", "the committee", "the office", "morale", "the membership", "the partnership"],
    },
    "movies": {
        "gnoun": [
            "festival programmers", "critics", "cinema owners", "script editors", "archivists", "projectionists",
            "ushers", "sound engineers", "set builders", "costume makers", "location scouts", "distributors",
            "subtitle writers", "ticket sellers", "cinema club members", "screenwriters", "stagehands",
            "casting agents", "restorers", "festival juries",
        ],
        "onoun": [
            "trailers", "reels", "posters", "premieres", "matinees", "credits", "scripts", "soundtracks", "subtitles",
            "screenings", "rehearsals", "storyboards", "costumes", "sets", "retrospectives", "festival line-ups",
            "intermissions", "ticket queues",
        ],
        "pnoun": [
            "projection booths", "art house cinemas", "festival tents", "back lots", "editing rooms", "drive-ins",
            "sound stages", "costume stores", "foyers", "rehearsal rooms", "village halls on tour nights",
            "balcony seats",
        ],
        "csubj": [
            "trailers", "restored reels", "festival prizes", "good soundtracks", "careful subtitles",
            "midnight screenings", "late rehearsals", "hand-painted posters", "long retrospectives", "sequels",
            "remakes", "full houses", "good scores", "festival juries",
        ],
        "cobj": [
            "loyal audiences", "word of mouth", "a weak scene", "festival buzz", "boredom", "the ticket queue",
            "forgotten craft", "the critics", "a full house", "the final cut",
        ],
        "enoun": [
            "premiere", "retrospective", "restoration", "festival season", "reshoot", "walkout",
            "restoration of old reels", "closing of the old cinema", "rise of streaming catalogues", "noisy premiere",
        ],
        "osubj": ["the audience", "the festival", "the cinema", "the crew", "the foyer", "the season"],
    },
}

_RICH_TEMPLATES = [
    # short
    "{claim}.", "{outcome}.", "{place} {place_pred}.", "{qualifier}, of course.", "{object} {obj_pred}.",
    "{deny} {claim}.", "{group} rarely agree on {object}.", "so it goes in {place}.",
    "{time}, {place} {place_pred}.", "{gnoun} notice such things.", "{qualifier}.",
    # simple
    "{time}, {group} {verb} {object}.", "{group} {argue} {claim}.", "{deny} {claim}.",
    "{per} {group}, {claim}{conn} {qualifier}.", "few {people} expected {event}, yet {outcome}.",
    "{time}, the {adj} {noun} in {object} drew attention from {group}.",
    "some {people} still remember {event}; {outcome}.", "when {group} {verb} {object}, they {found} {claim}.",
    "the {adj} {noun} described by {group} suggests that {claim}.", "nobody planned {event}, but {outcome}.",
    "there is a {adj} {noun} here: {claim}.", "{people} and {group} alike {verb} {object}.",
    "the question of {object} keeps coming back, and {qualifier}.", "in {place}, {claim}.",
    "{group} {verb} {object} and {found} {qualifier}.", "it took {event} for {group} to notice {object}.",
    "{people} in {place} tend to {pverb} {object}.", "much of what {group} know about {object} comes from {source}.",
    "even {group} admit that {qualifier}.", "{time}, {event} changed {object}.",
    "the story of {object} is {told} as {story}, but {qualifier}.", "what {group} remember most is {event}.",
    "{group} still {pverb} {object}, {stance}.", "the lesson, if there is any, is that {claim}.",
    "{people} who visit {place} often {pverb} {object}.", "{time}, {people} gathered in {place} to discuss {object}.",
    "that {claim} {news} {group}.", "{group} point to {object} as proof that {claim}.",
    "the {adj} {noun} around {object} has its critics.", "if {group} are right, {claim}.",
    "whatever the cause, {outcome}.", "{claim}, or so {group} {say}.", "in {place} and beyond, {claim}.",
    "not long after {event}, {group} {verb} {object}.", "long before {event}, {clause}.",
    "by the time {group} {verb} {object}, {outcome}.",
    "the more {group} {verb} {object}, the {clearer} it became that {claim}.",
    "{group} tend to {pverb} {object}, {stance}.", "for {group}, {object} {obj_pred}.",
    "there was a {adj} {noun} to the way {group} {verb} {object}.",
    "among {people}, the {adj} {noun} toward {object} {noun_pred}.",
    # questions
    "why do {group} keep returning to {object}?", "{qopen} {claim}?", "what did {group} make of {event}?",
    "{foresee} {event}?", "does anybody still {pverb} {object}?", "how did {place} cope with {event}?",
    "what explains the {adj} {noun} in {place}?", "{qopen} {claim}?",
    # compound
    "{clause}{conn} {clause}.", "{clause}{conn} {clause}.", "{clause}{conn} {clause}.",
    "{time}, {clause}{conn} {clause}.", "{clause}{conn} {clause}, or so {group} {say}.",
    "{group} {verb} {object}{conn} {clause}.", "{outcome}{conn} {qualifier}.",
    "{event} surprised {group}{conn} {claim}.",
    "{group} {say} that {claim}{conn} {clause}.", "after {event}, {clause}{conn} {clause}.",
    "{clause}, and {clause}.", "{clause}, but {qualifier}.", "between {event} and {event}, {clause}.",
    "{people} from {place} and {people} from {place} {verb} {object} together{conn} {clause}.",
    "{time}, {group} {verb} {object}, and {people} in {place} {verb} {object}.",
    "{group} {verb} {object} while {group} {verb} {object}; {qualifier}.",
    "{clause}{conn} {clause}, which is why {claim}.",
]


_AN = re.compile(r"\b([Aa]) (?=[aeiouAEIOU])")
_SLOT = re.compile(r"\{(\w+)\}")


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


class Filler:
    """An endless, reproducible stream of filler sentences (optionally flavoured by a topic).

    style: "templates" (the small grammar above; its output for a seed must never change) or "rich" (the
    larger recursive grammar `_RICH_TEMPLATES`, far less repetitive over long prompts).
    """

    def __init__(self, rng: random.Random, topic: str | None = None, style: str = "templates"):
        if topic is not None and topic not in _TOPICS:
            raise ValueError(f"unknown filler topic {topic!r}; known: {sorted(_TOPICS)}")
        if style not in FILLER_STYLES:
            raise ValueError(f"unknown filler style {style!r}; allowed: {', '.join(FILLER_STYLES)}")
        self.rng = rng
        self.style = style
        general, topics = (_GENERAL, _TOPICS) if style == "templates" else (_RICH, _RICH_TOPICS)
        self.vocab = {k: list(v) for k, v in general.items()}
        for k, v in (topics.get(topic) or {}).items():
            # Topic words are listed twice so domain flavour shows up often without crowding out variety.
            self.vocab[k] = self.vocab[k] + list(v) * 2
        self._last: str | None = None

    def _expand(self, text: str) -> str:
        """Rich style: fill every {slot} with a random entry of its list, recursively, left to right."""
        return _SLOT.sub(lambda m: self._expand(self.rng.choice(self.vocab[m.group(1)])), text)

    def sentence(self) -> str:
        if self.style == "rich":
            while True:
                s = _cap(_AN.sub(r"\1n ", self._expand(self.rng.choice(_RICH_TEMPLATES))))
                if s != self._last:
                    self._last = s
                    return s
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
