"""PII detectors and masking, in-process and regex + checksum based (no model, no network).

Checksums (Luhn for cards, ISO 7064 mod-97 for IBANs, the check letter of a Spanish DNI) keep
ordinary numbers from being masked as cards or accounts. Each hit is a safety event counted by
kind; the masks are stable labels such as ``[EMAIL]`` so that a reader of the audit log sees what
kind of data was there without seeing the data.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_ok(raw: str) -> bool:
    s = raw.replace(" ", "").upper()
    if not 15 <= len(s) <= 34:
        return False
    moved = s[4:] + s[:4]
    try:
        return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1
    except ValueError:
        return False


def _card_ok(m: str) -> bool:
    digits = re.sub(r"\D", "", m)
    return 13 <= len(digits) <= 19 and luhn_ok(digits)


def _ip_ok(m: str) -> bool:
    try:
        ipaddress.ip_address(m)
        return True
    except ValueError:
        return False


_DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"


def _national_ok(m: str) -> bool:
    if re.fullmatch(r"\d{8}[A-Z]", m):  # Spanish DNI: the letter is a checksum of the number
        return _DNI_LETTERS[int(m[:8]) % 23] == m[8]
    return True


@dataclass(frozen=True)
class Detector:
    name: str
    mask: str
    pattern: re.Pattern[str]
    valid: Callable[[str], bool] | None = None


# Order matters: cards and IBANs before phone numbers, so a card number is masked as a card.
DETECTORS: dict[str, Detector] = {d.name: d for d in (
    Detector("email", "[EMAIL]", re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")),
    Detector("card", "[CARD]", re.compile(r"\b(?:(?:\d{4}[ -]?){3}\d{1,7}|\d{13,19})\b"), _card_ok),
    Detector("iban", "[IBAN]", re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b"), iban_ok),
    Detector("national_id", "[NATIONAL_ID]", re.compile(
        r"\b(?:(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}"          # US SSN
        r"|[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D]"  # UK National Insurance number
        r"|\d{8}[A-Z])\b"), _national_ok),                                  # Spanish DNI
    Detector("ip", "[IP]", re.compile(
        r"(?<![\w:.])(?:(?:\d{1,3}\.){3}\d{1,3}|(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}"
        r"|(?:[0-9A-Fa-f]{1,4}:){1,7}:(?:[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4}){0,5})?"
        r"|::(?:[0-9A-Fa-f]{1,4}:){0,6}[0-9A-Fa-f]{1,4})(?![\w:.])"), _ip_ok),
    Detector("phone", "[PHONE]", re.compile(
        r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{2,4}(?:[ .-]\d{2,4}){1,4}(?!\w)"),
        lambda m: 9 <= len(re.sub(r"\D", "", m)) <= 15 and (m.startswith("+") or bool(re.search(r"[ .()-]", m)))),
)}


class Redactor:
    """Masks the configured detectors' hits in text, skipping strings on the allow list."""

    def __init__(self, detectors: list[str], patterns: dict[str, str] | None = None,
                 allow: list[str] | None = None) -> None:
        self.detectors = [DETECTORS[d] for d in DETECTORS if d in detectors]
        for name, p in (patterns or {}).items():
            self.detectors.append(Detector(name, f"[{name.upper()}]", re.compile(p)))
        self.allow = set(allow or ())

    def text(self, s: str, events: Counter[str]) -> str:
        for d in self.detectors:
            def sub(m: re.Match[str], d: Detector = d) -> str:
                hit = m.group(0)
                if hit in self.allow or (d.valid is not None and not d.valid(hit)):
                    return hit
                events[f"pii.{d.name}"] += 1
                return d.mask
            s = d.pattern.sub(sub, s)
        return s

    def messages(self, messages: Any, events: Counter[str]) -> Any:
        """A copy of chat messages with every text content masked (string or text parts)."""
        if not isinstance(messages, list):
            return messages
        out = []
        for m in messages:
            if not isinstance(m, dict):
                out.append(m)
                continue
            m = dict(m)
            c = m.get("content")
            if isinstance(c, str):
                m["content"] = self.text(c, events)
            elif isinstance(c, list):
                m["content"] = [{**p, "text": self.text(p["text"], events)}
                                if isinstance(p, dict) and isinstance(p.get("text"), str) else p for p in c]
            out.append(m)
        return out

    def body(self, body: dict[str, Any], events: Counter[str]) -> dict[str, Any]:
        """The request body with its prompt or messages masked; other fields untouched."""
        out = dict(body)
        if "messages" in out:
            out["messages"] = self.messages(out["messages"], events)
        if isinstance(out.get("prompt"), str):
            out["prompt"] = self.text(out["prompt"], events)
        elif isinstance(out.get("prompt"), list):
            out["prompt"] = [self.text(p, events) if isinstance(p, str) else p for p in out["prompt"]]
        return out


class BlockList:
    """Case-insensitive regexes; a hit blocks the prompt or the response and counts as a safety event."""

    def __init__(self, patterns: list[str], allow: list[str] | None = None) -> None:
        self.pattern = re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE) if patterns else None
        self.allow = list(allow or ())

    def hit(self, text: str) -> str | None:
        if self.pattern is None:
            return None
        for a in self.allow:
            text = text.replace(a, " ")
        m = self.pattern.search(text)
        return m.group(0) if m else None


def prompt_text(body: dict[str, Any]) -> str:
    """All prompt text of a chat or completion request, for block lists and hashing."""
    parts: list[str] = []
    for m in body.get("messages") or []:
        c = m.get("content") if isinstance(m, dict) else None
        if isinstance(c, str):
            parts.append(c)
        elif isinstance(c, list):
            parts.extend(p["text"] for p in c if isinstance(p, dict) and isinstance(p.get("text"), str))
    p = body.get("prompt")
    if isinstance(p, str):
        parts.append(p)
    elif isinstance(p, list):
        parts.extend(x for x in p if isinstance(x, str))
    return "\n".join(parts)
