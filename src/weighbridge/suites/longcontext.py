"""``builtin:long-context``: needle-in-a-haystack and multi-fact retrieval cases, generated (not a
fixed file) at chosen lengths and depths.

    builtin:long-context                                   lengths 2k, 8k; depths 0, 50, 100 %
    builtin:long-context?lengths=2k,8k,32k,128k&depths=0,25,50,75,100&facts=3

The haystack is prose assembled from a fixed vocabulary by a seeded generator (so a case's text
is the same on every machine and nothing is downloaded), about four characters per token of the
common BPE tokenizers; a needle is one sentence that states a fact found nowhere else ("The
access code for the Lisbon archive is 7341-KQ."), put at the chosen depth (0 % = the start, 100 %
= just before the question). Multi-fact cases hide ``facts`` needles spread around the depth and
ask for all of them. Each case is checked with ``contains`` on the fact's value, so the answer's
wording does not matter.

Lengths are nominal: each case carries ``context_tokens`` (the prompt's length by this estimate),
and a model whose context window cannot hold the prompt and its reply (counted with the model's own
tokenizer where the model is a local GGUF) is not given that case: it is reported as not run, with
the reason, never silently truncated. Tags ``len:8k`` and ``depth:50`` let the report lay accuracy
out by length × depth.
"""

from __future__ import annotations

import random
import re
from typing import Any

_WORDS = ("river morning village market harbour winter garden letter window station mountain library "
          "evening teacher journey kitchen bridge summer forest orchard lantern meadow council ledger "
          "carriage valley harvest workshop chapel cellar courtyard tower meadow granary quarry ferry").split()
_VERBS = "walked carried noticed painted repaired counted remembered followed described measured opened".split()
_ADJ = "quiet narrow golden distant early heavy patient careful crowded silver hollow gentle".split()
_CITIES = ("Lisbon Kyoto Nairobi Oslo Quito Tbilisi Hanoi Dakar Lima Tallinn Perth Accra Porto Riga "
           "Sapporo Cusco Zagreb Tunis").split()
_THINGS = "archive vault greenhouse observatory depot lighthouse foundry".split()
CHARS_PER_TOKEN = 4.0
DEFAULT = {"lengths": ["2k", "8k"], "depths": [0, 50, 100], "facts": 3}
_LENGTH = re.compile(r"^(\d+(?:\.\d+)?)([kK]?)$")


def parse_length(text: str) -> int:
    m = _LENGTH.match(text.strip())
    if not m:
        raise ValueError(f"length {text!r}: give tokens as 2000 or 2k")
    n = float(m.group(1)) * (1024 if m.group(2) else 1)
    if not 256 <= n <= 2_000_000:
        raise ValueError(f"length {text!r}: between 256 and 2M tokens")
    return int(n)


def parse_options(query: str) -> dict[str, Any]:
    """``lengths=2k,8k&depths=0,50&facts=3`` into checked options (a clear error for anything else)."""
    opts: dict[str, Any] = dict(DEFAULT)
    for part in filter(None, query.split("&")):
        key, _, value = part.partition("=")
        if key == "lengths":
            opts["lengths"] = [v for v in value.split(",") if v]
            for v in opts["lengths"]:
                parse_length(v)
        elif key == "depths":
            try:
                opts["depths"] = [int(v) for v in value.split(",") if v]
            except ValueError:
                raise ValueError(f"depths {value!r}: whole percentages such as 0,50,100") from None
            if not all(0 <= d <= 100 for d in opts["depths"]):
                raise ValueError(f"depths {value!r}: each between 0 and 100")
        elif key == "facts":
            if not value.isdigit() or not 2 <= int(value) <= 10:
                raise ValueError(f"facts {value!r}: a number from 2 to 10")
            opts["facts"] = int(value)
        else:
            raise ValueError(f"unknown option {key!r} (known: lengths, depths, facts)")
    if not opts["lengths"] or not opts["depths"]:
        raise ValueError("lengths and depths need at least one value each")
    return opts


def _sentence(rng: random.Random) -> str:
    a, b = rng.sample(_WORDS, 2)
    return (f"The {rng.choice(_ADJ)} {a} {rng.choice(_VERBS)} the {rng.choice(_ADJ)} {b} "
            f"{rng.choice(['before noon', 'after the rain', 'in the old town', 'by the water', 'at dusk'])}. ")


def haystack(chars: int, seed: int) -> list[str]:
    """Sentences adding up to about ``chars`` characters (one list, so needles go between sentences)."""
    rng = random.Random(seed)
    out: list[str] = []
    total = 0
    # a pool of sentences reused in seeded order: building 128k tokens stays well under a second
    pool = [_sentence(rng) for _ in range(512)]
    while total < chars:
        s = pool[rng.randrange(len(pool))]
        out.append(s)
        total += len(s)
    return out


def _fact(rng: random.Random, used: set[str]) -> tuple[str, str, str]:
    while True:
        city, thing = rng.choice(_CITIES), rng.choice(_THINGS)
        if f"{city} {thing}" not in used:
            used.add(f"{city} {thing}")
            break
    code = f"{rng.randint(1000, 9999)}-{rng.choice('ABCDEFGHJKLMNPQRSTUVWXYZ')}{rng.choice('ABCDEFGHJKLMNPQRSTUVWXYZ')}"
    return city, thing, code


def _place(sentences: list[str], needle: str, depth: int) -> None:
    sentences.insert(round(len(sentences) * depth / 100), needle + " ")


def generate(opts: dict[str, Any]) -> list[dict[str, Any]]:
    """The cases, as raw mappings the suite loader validates like any other suite's."""
    cases: list[dict[str, Any]] = []
    for length in opts["lengths"]:
        tokens = parse_length(length)
        for depth in opts["depths"]:
            for kind in ("needle", "multi"):
                seed = tokens * 1009 + depth * 31 + (kind == "multi")
                rng = random.Random(seed)
                used: set[str] = set()
                body_chars = int(tokens * CHARS_PER_TOKEN) - 400  # room for the instructions and the question
                sentences = haystack(max(body_chars, 200), seed)
                if kind == "needle":
                    city, thing, code = _fact(rng, used)
                    _place(sentences, f"The access code for the {city} {thing} is {code}.", depth)
                    question = f"What is the access code for the {city} {thing}? Reply with the code only."
                    values = [code]
                else:
                    facts = [_fact(rng, used) for _ in range(opts["facts"])]
                    spread = [max(0, min(100, depth + off)) for off in range(-10 * (len(facts) // 2), 10 * len(facts), 10)]
                    for (city, thing, code), d in zip(facts, spread):
                        _place(sentences, f"The access code for the {city} {thing} is {code}.", d)
                    names = ", ".join(f"the {c} {t}" for c, t, _ in facts)
                    question = f"List the access codes for {names}, one per line."
                    values = [code for _, _, code in facts]
                document = "".join(sentences)
                prompt = (f"Read the document and answer the question after it.\n\n<document>\n{document}"
                          f"</document>\n\nQuestion: {question}")
                cases.append({
                    "id": f"lc-{kind}-{length}-d{depth}",
                    "prompt": prompt,
                    "tags": ["long-context", f"len:{length}", f"depth:{depth}", kind],
                    "workload": "long-context",
                    "context_tokens": int(len(prompt) / CHARS_PER_TOKEN),
                    "scorers": [{"type": "contains", "value": values, "mode": "all"}],
                })
    return cases
