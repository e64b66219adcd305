"""PII detection on libraries that know the formats: phone numbers of any region (``phonenumbers``,
Google's libphonenumber data), checksummed identifiers (``python-stdnum``: Luhn, IBAN, SSN rules,
Chinese resident ID, EU VAT and national IDs), e-mail addresses as RFC 6531 allows them
(``email-validator``: internationalised domains and local parts, quoted local parts) and IP
addresses (``ipaddress``).

Each detector first finds *candidates* with a cheap regex (most text has none, so most text costs
one scan per detector) and then lets the library decide. The regex only has to be generous; the
library keeps ordinary numbers — order numbers, timestamps, versions, tracking codes — from being
masked. Where a format has no checksum and looks like any other number (a bare nine-digit SSN, a
Dutch BSN, a German tax ID, a passport number) it is only taken when a context word stands right
before it ("SSN", "BSN", "Steuer-ID", "passport", "护照" …).

Boundaries use ASCII classes, not ``\\w``: in Chinese or Japanese text a number often touches an
ideograph ("电话13800138000"), which ``\\w`` would count as part of the same word.
"""

from __future__ import annotations

import bisect
import ipaddress
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from stdnum import iban as std_iban
from stdnum import luhn
from stdnum.cn import ric
from stdnum.de import idnr
from stdnum.es import dni, nie
from stdnum.eu import vat
from stdnum.fr import nir
from stdnum.it import codicefiscale
from stdnum.nl import bsn
from stdnum.us import ssn

DEFAULT_REGIONS = ["US", "GB", "DE", "FR", "ES", "IT", "NL", "CN", "IN"]


@dataclass(frozen=True, order=True)
class Hit:
    """One detected value: ``kind`` is the detector (its mask), ``sub`` the format it matched."""

    start: int
    end: int
    kind: str
    sub: str


Finder = Callable[[str], Iterator[tuple[int, int, str]]]

_NOT_ALNUM_BEFORE = r"(?<![0-9A-Za-z])"
_NOT_ALNUM_AFTER = r"(?![0-9A-Za-z])"


def _context(words: str) -> re.Pattern[str]:
    """A context word (and an optional 'no.', 'number', '#', ':') that must end right where the value starts."""
    return re.compile(r"(?i)(?<![0-9A-Za-z])(?:" + words + r")\.?(?:\s*(?:no\.?|nr\.?|number|num[eé]ro|nummer|n°|#|号码|号))?"
                      r"(?:\s*(?:is|ist|lautet|est|es|è|was|=|是|为))?\s*[:：#=]?\s*$")


def _before(text: str, start: int, pattern: re.Pattern[str], span: int = 40) -> bool:
    return pattern.search(text[max(0, start - span):start]) is not None


# -- e-mail ---------------------------------------------------------------------------------------
# Local part: letters of any script but CJK (a Chinese sentence runs straight into an address:
# "请联系alice@example.com"), digits and RFC 5322's specials; or a quoted string.
_LOCAL = r"(?:\"[^\"\r\n]{1,64}\"|[^\W\u3000-\u9fff\uac00-\ud7af\uff00-\uffef](?:[^\W\u3000-\u9fff\uac00-\ud7af\uff00-\uffef]|[.!#$%&'*+/=?^`{|}~-]){0,63})"
_EMAIL = re.compile(_LOCAL + r"@(?:[\w-]{1,63}\.)+[^\W\d_]{2,63}(?![\w-])")


def _emails(text: str) -> Iterator[tuple[int, int, str]]:
    if "@" not in text:
        return
    for m in _EMAIL.finditer(text):
        s, e = m.span()
        while e > s and text[e - 1] == ".":
            e -= 1
        try:
            validate_email(text[s:e], check_deliverability=False, allow_quoted_local=True)
        except EmailNotValidError:
            continue
        yield s, e, "email"


# -- phone numbers ----------------------------------------------------------------------------------
# possessive: a run that ends in a letter ("2025-01-03T05:58") is no candidate, not a shorter one
_PHONE_CANDIDATE = re.compile(_NOT_ALNUM_BEFORE + r"(?:\+|00)?\(?\d(?:[ \t().\-/]{1,3}\(?\d|\d)*+" + _NOT_ALNUM_AFTER)
# a number right after one of these is an order, invoice, ticket or tracking number, or a time, not a phone
_NOT_PHONE = _context(r"order|invoice|inv|ref|reference|tracking|ticket|case|po|sku|serial|id|account|acct|epoch|ts|"
                      r"timestamp|unix|fedex|ups|usps|dhl|awb|isbn|ean|gtin|imei|"
                      r"bestellung|bestellnummer|rechnung|rechnungsnummer|auftrag|sendungsnummer|commande|facture|"
                      r"pedido|factura|ordine|fattura|bestelling|factuur|订单|订单号|发票|编号|单号|注文")
_DATE = re.compile(r"(?:\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./](?:\d{4}|\d{2}))(?:[ T]\d{1,2})?")
_INTL_PREFIX = re.compile(r"^(?:\+|00)\s*")


def _phone_lookalike(text: str, m: re.Match[str]) -> bool:
    """The shapes libphonenumber's plans accept but a person would not read as a phone number."""
    raw, s, e = m.group(0), m.start(), m.end()
    before, after = text[max(0, s - 2):s], text[e:e + 2]
    if before[-1:] == "#" or _before(text, s, _NOT_PHONE, 32):
        return True
    if len(before) == 2 and before[1] in "-/_=" and before[0].isascii() and before[0].isalnum():
        return True  # the tail of an identifier: INV-6536-483924, key=value
    if re.match(r"[.,:]\d", after):
        return True  # an amount (814.581.082,77), a time (22:41) or a decimal continues here
    if _DATE.fullmatch(raw):
        return True
    if "." in raw:
        groups = re.split(r"[.]", raw)
        if len(groups) == 2 or any(len(g.strip()) == 1 for g in groups):
            return True  # a decimal (7.737796) or a version (125.0.5567.174)
    return False


class Phones:
    """Numbers libphonenumber accepts as valid in their plan. One written with + or 00 is parsed with
    its country code; a national one is tried against each default region whose plan allows its
    length, in order, and the first plan that accepts it wins."""

    def __init__(self, regions: list[str]) -> None:
        self.regions = []
        for r in regions:
            md = phonenumbers.PhoneMetadata.metadata_for_region(r)
            lengths = set(md.general_desc.possible_length) if md and md.general_desc else set(range(4, 18))
            self.regions.append((r, (md.national_prefix or "") if md else "", lengths))

    def __call__(self, text: str) -> Iterator[tuple[int, int, str]]:
        for m in _PHONE_CANDIDATE.finditer(text):
            raw = m.group(0)
            nd = sum(c.isdigit() for c in raw)
            if not 6 <= nd <= 17 or _phone_lookalike(text, m):
                continue
            if _INTL_PREFIX.match(raw):
                if self._valid("+" + _INTL_PREFIX.sub("", raw), None):
                    yield m.start(), m.end(), "phone"
                continue
            digits = re.sub(r"\D", "", raw)
            for region, prefix, lengths in self.regions:
                national = digits[len(prefix):] if prefix and digits.startswith(prefix) else digits
                if len(national) in lengths and self._valid(raw, region):
                    yield m.start(), m.end(), "phone"
                    break

    @staticmethod
    def _valid(raw: str, region: str | None) -> bool:
        try:
            return phonenumbers.is_valid_number(phonenumbers.parse(raw, region))
        except phonenumbers.NumberParseException:
            return False


# -- payment cards, IBANs -----------------------------------------------------------------------------
# runs of digit groups holding at least 13 digits (the shortest card); shorter runs never reach Python
_DIGIT_RUN = re.compile(_NOT_ALNUM_BEFORE + r"(?=(?:\d[ -]?){13})\d+(?:[ -]\d+)*+" + _NOT_ALNUM_AFTER)
# issuer prefixes (IIN ranges) of the card networks: a Luhn-valid number outside them is not a card
_IIN = re.compile(r"4|5[1-5]|2(?:2[2-9]|[3-6]\d|7[01]|720)|3[47]|3(?:0[0-5]|[68])|6(?:011|5|4[4-9]|2)|35(?:2[89]|[3-8])|5[06-9]|6\d")


def _card_ok(digits: str) -> bool:
    return 13 <= len(digits) <= 19 and bool(_IIN.match(digits)) and luhn.is_valid(digits)


_CARD_GROUPINGS = {(4, 4, 4, 4), (4, 4, 4, 4, 3), (4, 4, 4, 1), (4, 4, 4, 2), (4, 4, 4, 3), (4, 6, 5), (4, 6, 4)}


def _cards(text: str) -> Iterator[tuple[int, int, str]]:
    """Written as one block of digits or in a grouping the networks print (4-4-4-4, Amex 4-6-5,
    Diners 4-6-4); a run of groups may hold two cards one after the other. A run right after
    "tracking", "order" and the like is that number, not a card."""
    for m in _DIGIT_RUN.finditer(text):
        if _before(text, m.start(), _NOT_PHONE, 32):
            continue
        groups = [(g.start(), g.end()) for g in re.finditer(r"\d+", m.group(0))]
        raw, base, i = m.group(0), m.start(), 0
        while i < len(groups):
            for j in range(len(groups) - 1, i - 1, -1):
                seg = raw[groups[i][0]:groups[j][1]]
                sizes = tuple(b - a for a, b in groups[i:j + 1])
                if (len(sizes) == 1 or sizes in _CARD_GROUPINGS) and len(set(re.sub(r"\d", "", seg))) <= 1 \
                        and _card_ok(re.sub(r"\D", "", seg)):
                    yield base + groups[i][0], base + groups[j][1], "card"
                    i = j
                    break
            i += 1


_IBAN = re.compile(r"(?i)" + _NOT_ALNUM_BEFORE + r"[A-Z]{2}\d{2}(?:[ -]?[A-Z0-9]){11,30}")


def _groups_valid(text: str, m: re.Match[str], valid: Callable[[str], bool], min_len: int) -> tuple[int, int] | None:
    """The longest prefix of a candidate, cut at a separator or its end, that validates: a generous
    regex also swallows the word after the number ("DE89 3704 … 00 SSN")."""
    s, raw = m.start(), m.group(0)
    cuts = [len(raw)] + [i for i in range(len(raw) - 1, min_len - 1, -1) if raw[i] in " -"]
    for cut in cuts:
        end = s + cut
        if end < len(text) and text[end].isascii() and text[end].isalnum():
            continue
        if valid(raw[:cut]):
            return s, end
    return None


def _ibans(text: str) -> Iterator[tuple[int, int, str]]:
    for m in _IBAN.finditer(text):
        span = _groups_valid(text, m, std_iban.is_valid, 15)
        if span:
            yield span[0], span[1], "iban"


# -- national identifiers ------------------------------------------------------------------------------
_SSN_FORMATTED = re.compile(_NOT_ALNUM_BEFORE + r"\d{3}([- ])\d{2}\1\d{4}" + r"(?![0-9A-Za-z]|[- ]\d)")
_SSN_BARE = re.compile(_NOT_ALNUM_BEFORE + r"\d{9}" + _NOT_ALNUM_AFTER)
_SSN_CONTEXT = _context(r"ssn|ss#|social security|soc\.? ?sec\.?|social security number")
# stdnum rejects the numbers once printed in advertising (078-05-1120 …); a redactor masks them anyway
_SSN_PUBLISHED = {"078051120", "219099999", "457555462"}
_RIC = re.compile(_NOT_ALNUM_BEFORE + r"\d{6} ?\d{8} ?\d{3}[\dXx]" + _NOT_ALNUM_AFTER)
_DNI = re.compile(_NOT_ALNUM_BEFORE + r"(?:\d{8}|[XYZxyz]-?\d{7})-?[A-Za-z]" + _NOT_ALNUM_AFTER)
_NIR = re.compile(_NOT_ALNUM_BEFORE + r"[12] ?\d{2} ?\d{2} ?(?:\d{2}|2[AB]) ?\d{3} ?\d{3} ?\d{2}" + _NOT_ALNUM_AFTER)
_CF = re.compile(r"(?i)" + _NOT_ALNUM_BEFORE + r"[A-Z]{6}[\dLMNPQRSTUV]{2}[A-EHLMPR-T][\dLMNPQRSTUV]{2}[A-Z][\dLMNPQRSTUV]{3}[A-Z]"
                 + _NOT_ALNUM_AFTER)
_NINO = re.compile(_NOT_ALNUM_BEFORE + r"(?!BG|GB|NK|KN|TN|NT|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D]"
                   + _NOT_ALNUM_AFTER)
_IDNR = re.compile(_NOT_ALNUM_BEFORE + r"\d{2} ?\d{3} ?\d{3} ?\d{3}" + _NOT_ALNUM_AFTER)
_IDNR_CONTEXT = _context(r"steuer-?id|steuer-?identifikationsnummer|identifikationsnummer|idnr|tin|tax id")
_BSN = re.compile(_NOT_ALNUM_BEFORE + r"\d{4}\.?\d{2}\.?\d{3}" + _NOT_ALNUM_AFTER)
_BSN_CONTEXT = _context(r"bsn|burgerservicenummer|sofinummer|sofi")


# one scan that every national ID format below must match somewhere: text without it skips nine scans
_NATIONAL_SHAPES = re.compile(r"\d{7}|\d{3}[- ]\d{2}[- ]\d{4}|\d{2} \d{3} \d{3}|\d \d{2} \d{2} \d{2}|\d{4}\.\d{2}\.\d{3}"
                              r"|\d{6} \d{8}|[A-Za-z]{6}[0-9LMNPQRSTUV]{2}|[A-Z]{2} ?\d{2} ?\d{2} ?\d{2}")


def _national_ids(text: str) -> Iterator[tuple[int, int, str]]:
    if not _NATIONAL_SHAPES.search(text):
        return
    for m in _SSN_FORMATTED.finditer(text):
        v = m.group(0).replace(" ", "-")
        if ssn.is_valid(v) or ssn.compact(v) in _SSN_PUBLISHED:
            yield m.start(), m.end(), "ssn"
    for m in _SSN_BARE.finditer(text):
        if _before(text, m.start(), _SSN_CONTEXT) and (ssn.is_valid(m.group(0)) or m.group(0) in _SSN_PUBLISHED):
            yield m.start(), m.end(), "ssn"
    for m in _RIC.finditer(text):
        if ric.is_valid(m.group(0).replace(" ", "").upper()):
            yield m.start(), m.end(), "cn_ric"
    for m in _DNI.finditer(text):
        v = m.group(0).upper()
        if dni.is_valid(v) or nie.is_valid(v):
            yield m.start(), m.end(), "es_dni"
    for m in _NIR.finditer(text):
        if nir.is_valid(m.group(0)):
            yield m.start(), m.end(), "fr_nir"
    for m in _CF.finditer(text):
        if codicefiscale.is_valid(m.group(0).upper()):
            yield m.start(), m.end(), "it_cf"
    for m in _NINO.finditer(text):
        yield m.start(), m.end(), "uk_nino"
    for m in _IDNR.finditer(text):
        if _before(text, m.start(), _IDNR_CONTEXT) and idnr.is_valid(m.group(0)):
            yield m.start(), m.end(), "de_idnr"
    for m in _BSN.finditer(text):
        if _before(text, m.start(), _BSN_CONTEXT) and bsn.is_valid(m.group(0)):
            yield m.start(), m.end(), "nl_bsn"


# -- VAT numbers, passports ---------------------------------------------------------------------------
_VAT = re.compile(_NOT_ALNUM_BEFORE + r"(?:AT|BE|BG|CY|CZ|DE|DK|EE|EL|ES|FI|FR|HR|HU|IE|IT|LT|LU|LV|MT|NL|PL|PT|RO|SE|SI|SK)"
                  r"[ -]?[0-9A-Z](?:[ .-]?[0-9A-Z]){7,13}")


def _vats(text: str) -> Iterator[tuple[int, int, str]]:
    for m in _VAT.finditer(text):
        span = _groups_valid(text, m, lambda v: bool(re.search(r"\d", v[2:])) and vat.is_valid(v), 10)
        if span:
            yield span[0], span[1], "eu_vat"


_PASSPORT = re.compile(r"(?i)(?:passport|passeport|reisepass(?:nummer)?|pasaporte|passaporto|paspoort|护照|護照|旅券)"
                       r"\.?(?:\s*(?:no\.?|nr\.?|number|num[eé]ro|nummer|n°|号码|号|番号))?\s*[:：#]?\s*"
                       r"(?=[A-Z]*[0-9])([A-Z0-9]{6,9})" + _NOT_ALNUM_AFTER)


def _passports(text: str) -> Iterator[tuple[int, int, str]]:
    for m in _PASSPORT.finditer(text):
        yield m.start(1), m.end(1), "passport"


# -- IP addresses -----------------------------------------------------------------------------------
_IPV4 = re.compile(r"(?<![0-9A-Za-z.])(?:\d{1,3}\.){3}\d{1,3}(?![0-9A-Za-z]|\.\d)")
_IPV6 = re.compile(r"(?<![0-9A-Za-z:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?(?:%[0-9A-Za-z.]+)?"
                   r"(?![0-9A-Za-z:.])")
_VERSION_BEFORE = re.compile(r"(?i)(?:\bv|\b(?:version|ver|build|release|rev|revision|firmware|fw|sdk|api|update|patch|"
                             r"section|chapter|clause|art|version|versión|versione|versie|版本))\.?\s*$")


def _ips(text: str) -> Iterator[tuple[int, int, str]]:
    if "." in text:
        for m in _IPV4.finditer(text):
            if _before(text, m.start(), _VERSION_BEFORE, 20):
                continue
            try:
                addr = ipaddress.IPv4Address(m.group(0))
            except ValueError:
                continue
            if not (addr.is_unspecified or addr.is_loopback):  # 0.0.0.0 and 127.x name no one
                yield m.start(), m.end(), "ipv4"
    if "::" in text or text.count(":") >= 7:
        for m in _IPV6.finditer(text):
            v = m.group(0)
            if sum(c.isalnum() for c in v.split("%")[0]) < 2:
                continue
            try:
                addr6 = ipaddress.IPv6Address(v)
            except ValueError:
                continue
            if not (addr6.is_unspecified or addr6.is_loopback):
                yield m.start(), m.end(), "ipv6"


# -- the registry --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Detector:
    name: str
    mask: str
    find: Finder
    needs_digit: bool = False  # every value it finds has a digit: text without one is skipped


_DIGIT = re.compile(r"[0-9]")


def has_digit(text: str) -> bool:
    return _DIGIT.search(text) is not None


def builtin_detectors(regions: list[str]) -> dict[str, Detector]:
    """In priority order: where two detectors claim overlapping text, the earlier one wins (an IBAN's
    digits are not also a phone number)."""
    return {d.name: d for d in (
        Detector("email", "[EMAIL]", _emails),
        Detector("iban", "[IBAN]", _ibans, True),
        Detector("card", "[CARD]", _cards, True),
        Detector("national_id", "[NATIONAL_ID]", _national_ids, True),
        Detector("vat", "[VAT]", _vats, True),
        Detector("passport", "[PASSPORT]", _passports, True),
        Detector("ip", "[IP]", _ips, True),
        Detector("phone", "[PHONE]", Phones(regions), True),
    )}


DETECTOR_NAMES = list(builtin_detectors(DEFAULT_REGIONS))


def known_region(code: str) -> bool:
    return code in phonenumbers.SUPPORTED_REGIONS


def regex_finder(name: str, pattern: str) -> Finder:
    compiled = re.compile(pattern)

    def find(text: str) -> Iterator[tuple[int, int, str]]:
        for m in compiled.finditer(text):
            if m.end() > m.start():
                yield m.start(), m.end(), name
    return find


def resolve(hits: list[Hit], priority: dict[str, int]) -> list[Hit]:
    """Non-overlapping hits, in text order; on overlap the higher-priority detector's hit is kept.
    Kept hits sit in a list sorted by start, so each new one is checked against its two neighbours
    only (a body with a hundred thousand values must not take n² steps)."""
    starts: list[int] = []
    chosen: list[Hit] = []
    for h in sorted(hits, key=lambda h: (priority[h.kind], h.start, -(h.end - h.start))):
        i = bisect.bisect_left(starts, h.start)
        if i > 0 and chosen[i - 1].end > h.start:
            continue
        if i < len(chosen) and chosen[i].start < h.end:
            continue
        starts.insert(i, h.start)
        chosen.insert(i, h)
    return chosen

