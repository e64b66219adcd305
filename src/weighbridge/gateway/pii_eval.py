"""Recall and precision of the PII detectors on a labelled corpus (one JSON object per line: ``text``,
``group`` = ``pii`` | ``lookalike``, ``pii`` = [{``type``, ``value``}]), per type.

A labelled value counts as found when one hit of its type covers all of it; a hit counts as
correct when it overlaps a labelled value of its type. Look-alikes (strings with no PII at all)
are scored on their own: the share of them in which anything was masked is the false-positive
rate a user sees. One copy, used by ``bench/pii_detectors.py`` and by the tests that hold the goals.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .redact import Redactor

# corpus type -> the (detector, format) that should report it; None: no built-in detector claims it
TYPES: dict[str, tuple[str, str] | None] = {
    "email": ("email", "email"), "phone": ("phone", "phone"), "card": ("card", "card"), "iban": ("iban", "iban"),
    "ssn": ("national_id", "ssn"), "cn_ric": ("national_id", "cn_ric"), "es_dni": ("national_id", "es_dni"),
    "fr_nir": ("national_id", "fr_nir"), "it_cf": ("national_id", "it_cf"), "de_idnr": ("national_id", "de_idnr"),
    "nl_bsn": ("national_id", "nl_bsn"), "uk_nino": ("national_id", "uk_nino"), "eu_vat": ("vat", "eu_vat"),
    "passport": ("passport", "passport"), "ipv4": ("ip", "ipv4"), "ipv6": ("ip", "ipv6"),
    "name": None, "address": None,
}
CHECKSUMMED = ("card", "iban", "ssn", "cn_ric", "es_dni", "fr_nir", "it_cf", "de_idnr", "nl_bsn", "eu_vat")


@dataclass
class TypeScore:
    labelled: int = 0
    found: int = 0
    masked: int = 0  # covered by a hit of any type: private, if mislabelled
    hits: int = 0
    correct_hits: int = 0

    @property
    def recall(self) -> float | None:
        return self.found / self.labelled if self.labelled else None

    @property
    def precision(self) -> float | None:
        return self.correct_hits / self.hits if self.hits else None


@dataclass
class Evaluation:
    types: dict[str, TypeScore] = field(default_factory=dict)
    lookalikes: int = 0
    lookalikes_hit: int = 0
    lookalike_notes: Counter[str] = field(default_factory=Counter)
    misses: list[tuple[str, str]] = field(default_factory=list)  # (type, text) of values not found
    false_hits: list[tuple[str, str]] = field(default_factory=list)  # (format, text) of wrong hits
    chars: int = 0

    @property
    def lookalike_fp_rate(self) -> float:
        return self.lookalikes_hit / self.lookalikes if self.lookalikes else 0.0

    def recall_of(self, names: tuple[str, ...]) -> float:
        lab = sum(self.types[n].labelled for n in names if n in self.types)
        return sum(self.types[n].found for n in names if n in self.types) / lab if lab else 0.0


def load_corpus(path: str | Path) -> list[dict[str, Any]]:
    rows = []
    for i, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except ValueError as e:
                raise ValueError(f"{path}:{i}: not a JSON object ({e})") from None
    return rows


def evaluate(redactor: Redactor, rows: list[dict[str, Any]]) -> Evaluation:
    ev = Evaluation({t: TypeScore() for t in TYPES})
    sub_to_type = {v[1]: t for t, v in TYPES.items() if v}
    for row in rows:
        text = row["text"]
        ev.chars += len(text.encode())
        hits = redactor.find(text)
        labels = []
        for lab in row["pii"]:
            start = text.index(lab["value"])
            labels.append((lab["type"], start, start + len(lab["value"])))
        for t, s, e in labels:
            score = ev.types[t]
            score.labelled += 1
            want = TYPES[t]
            if any(h.start <= s and h.end >= e for h in hits):
                score.masked += 1
            if want and any(h.start <= s and h.end >= e and (h.kind, h.sub) == want for h in hits):
                score.found += 1
            else:
                ev.misses.append((t, text))
        for h in hits:
            t = sub_to_type.get(h.sub)
            if t is None:
                continue  # a plan's own pattern: not scored here
            ev.types[t].hits += 1
            if any(lt == t and h.start < e and h.end > s for lt, s, e in labels):
                ev.types[t].correct_hits += 1
            else:
                ev.false_hits.append((h.sub, text))
        if row["group"] == "lookalike":
            ev.lookalikes += 1
            if hits:
                ev.lookalikes_hit += 1
                ev.lookalike_notes[row.get("note", "")] += 1
    return ev
