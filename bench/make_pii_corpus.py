"""Writes tests/data/pii_corpus.jsonl: the labelled strings the PII bench and tests measure on.

Each line is one message {"id", "lang", "group": "pii" | "lookalike", "note", "text", "pii": [{"type", "value"}]}.
Labels come from how each value was built, not from the detectors: identifiers are made with
their own check digits (a card's Luhn digit, an IBAN's mod-97 pair, a resident ID's ISO 7064 digit),
phone numbers are real-plan numbers of their region (libphonenumber's example number of a type,
its last digits varied until the plan accepts it) written in the ways people write them. The
look-alikes are what a redactor must leave alone: order and invoice numbers, timestamps, dates,
versions, tracking codes, ISBNs, amounts, coordinates, UUIDs. Types a default gateway does not
detect (names, street addresses) are in the corpus too, so the bench shows the gap instead of
hiding it.

The output is committed; rerun with the same seed to reproduce it byte for byte:
    python bench/make_pii_corpus.py
"""

from __future__ import annotations

import ipaddress
import json
import random
import string
import sys
from pathlib import Path

import phonenumbers
from phonenumbers import PhoneNumberFormat as F
from phonenumbers import PhoneNumberType as T
from stdnum import iban, luhn
from stdnum.cn import ric
from stdnum.de import idnr
from stdnum.es import dni, nie
from stdnum.eu import vat
from stdnum.fr import nir
from stdnum.it import codicefiscale
from stdnum.nl import bsn
from stdnum.us import ssn

OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "pii_corpus.jsonl"
rng = random.Random(20261202)
D = string.digits


def digits(n: int) -> str:
    return "".join(rng.choice(D) for _ in range(n))


# -- values ---------------------------------------------------------------------------------------
def phone(region: str, kind: T) -> phonenumbers.PhoneNumber:
    base = phonenumbers.example_number_for_type(region, kind)
    nn = str(base.national_number)
    for _ in range(500):
        cand = nn[:-4] + digits(4)
        num = phonenumbers.parse("+" + str(base.country_code) + cand)
        if phonenumbers.is_valid_number(num) and phonenumbers.number_type(num) == kind:
            return num
    return base


def phone_text(num: phonenumbers.PhoneNumber, style: str) -> str:
    nat = phonenumbers.format_number(num, F.NATIONAL)
    intl = phonenumbers.format_number(num, F.INTERNATIONAL)
    if style == "national":
        return nat
    if style == "international":
        return intl
    if style == "e164":
        return phonenumbers.format_number(num, F.E164)
    if style == "00":
        return "00" + intl[1:]
    if style == "national_dashes":
        return "-".join(nat.replace("(", "").replace(")", "").split())
    if style == "national_compact":
        return "".join(c for c in nat if c.isdigit())
    if style == "dots":
        return ".".join(nat.replace("(", "").replace(")", "").replace("-", " ").split())
    raise ValueError(style)


IIN = {"visa": ("4", 16), "mastercard": ("5" + rng.choice("12345"), 16), "mastercard2": ("2221", 16),
       "amex": ("3" + rng.choice("47"), 15), "discover": ("6011", 16), "jcb": ("353", 16), "diners": ("305", 14),
       "unionpay": ("62", 16), "maestro": ("6759", 19)}


def card(network: str) -> str:
    prefix, length = IIN[network]
    body = prefix + digits(length - len(prefix) - 1)
    return body + luhn.calc_check_digit(body)


def card_text(number: str, network: str, style: str) -> str:
    if style == "compact":
        return number
    if network in ("amex",) and style != "dashes4":
        return f"{number[:4]} {number[4:10]} {number[10:]}"
    if network == "diners" and style != "dashes4":
        return f"{number[:4]} {number[4:10]} {number[10:]}"
    groups = [number[i:i + 4] for i in range(0, len(number), 4)]
    return ("-" if style.startswith("dashes") else " ").join(groups)


IBAN_BBAN = {"DE": lambda: digits(18), "GB": lambda: rng.choice(["WEST", "NWBK", "BARC", "MIDL"]) + digits(14),
             "FR": lambda: digits(10) + digits(11) + digits(2), "ES": lambda: digits(20), "IT": lambda: rng.choice("ABCX") + digits(22),
             "NL": lambda: rng.choice(["ABNA", "INGB", "RABO"]) + digits(10), "BE": lambda: digits(12),
             "AT": lambda: digits(16), "CH": lambda: digits(17), "PL": lambda: digits(24)}


def iban_value(cc: str) -> str:
    for _ in range(20000):
        bban = IBAN_BBAN[cc]()
        number = cc + iban.calc_check_digits(cc + "00" + bban) + bban
        if iban.is_valid(number):
            return number
    raise RuntimeError(cc)


def iban_text(number: str, style: str) -> str:
    spaced = " ".join(number[i:i + 4] for i in range(0, len(number), 4))
    return {"compact": number, "spaced": spaced, "lower": spaced.lower(), "lower_compact": number.lower()}[style]


def ssn_value() -> str:
    while True:
        area = rng.randint(1, 899)
        if area != 666:
            v = f"{area:03d}{rng.randint(1, 99):02d}{rng.randint(1, 9999):04d}"
            if ssn.is_valid(v):
                return v


RIC_REGIONS = ["110105", "310104", "440305", "330106", "510107", "420102", "320102", "610113"]


def ric_value() -> str:
    while True:  # a region code counts only for people born while it existed (stdnum's registry)
        v = _ric_candidate()
        if ric.is_valid(v):
            return v


def _ric_candidate() -> str:
    birth = f"{rng.randint(1950, 2005)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
    body = rng.choice(RIC_REGIONS) + birth + digits(3)
    return body + ric.calc_check_digit(body + "0")  # stdnum's helper takes the number with a check digit slot


def dni_value() -> str:
    if rng.random() < 0.3:
        body = rng.choice("XYZ") + digits(7)
        return body + nie.calc_check_digit(body)
    body = digits(8)
    return body + dni.calc_check_digit(body)


def nir_value() -> str:
    body = rng.choice("12") + f"{rng.randint(50, 99):02d}{rng.randint(1, 12):02d}{rng.randint(1, 95):02d}" + digits(6)
    return body + nir.calc_check_digits(body)


def cf_value() -> str:
    letters = "".join(rng.choice(string.ascii_uppercase) for _ in range(6))
    day = rng.randint(1, 28) + (40 if rng.random() < 0.5 else 0)
    body = f"{letters}{rng.randint(50, 99):02d}{rng.choice('ABCDEHLMPRST')}{day:02d}{rng.choice('ABCDEFGHL')}{digits(3)}"
    return body + codicefiscale.calc_check_digit(body)


def idnr_value() -> str:
    while True:
        v = digits(11)
        if v[0] != "0" and idnr.is_valid(v):
            return v


def bsn_value() -> str:
    while True:
        v = digits(9)
        if v[0] != "0" and bsn.is_valid(v):
            return v


def nino_value() -> str:
    first = rng.choice("ABCEGHJKLMNOPRSTWXYZ")
    second = rng.choice("ABCEGHJKLMNPRSTWXYZ")
    if first + second in ("BG", "GB", "NK", "KN", "TN", "NT", "ZZ"):
        return nino_value()
    return f"{first}{second} {digits(2)} {digits(2)} {digits(2)} {rng.choice('ABCD')}"


VAT_FORMS = {"DE": lambda: digits(9), "FR": lambda: digits(11), "IT": lambda: digits(11), "NL": lambda: digits(9) + "B01",
             "AT": lambda: "U" + digits(8), "BE": lambda: "0" + digits(9), "ES": lambda: rng.choice("ABC") + digits(8),
             "PL": lambda: digits(10), "SE": lambda: digits(10) + "01", "DK": lambda: digits(8)}


def vat_value(cc: str) -> str:
    for _ in range(200000):
        v = cc + VAT_FORMS[cc]()
        if vat.is_valid(v):
            return v
    raise RuntimeError(cc)


def passport_value(country: str) -> str:
    return {"CN": lambda: "E" + digits(8), "US": lambda: digits(9), "DE": lambda: "C" + "".join(rng.choice("CFGHJKLMNPRTVWXYZ0123456789") for _ in range(8)),
            "FR": lambda: digits(2) + rng.choice(["AB", "CD", "EF"]) + digits(5), "GB": lambda: digits(9)}[country]()


FIRST = ["alice", "bob", "maria", "jan", "li.wei", "zhang.san", "sophie", "luca", "pieter", "ines", "jürgen", "françois",
         "björn", "chloé", "núria", "o'brien", "anna-lena", "raj", "yuki", "omar"]
DOMAINS = ["example.com", "corp.example", "mail.example.org", "beispiel.de", "exemple.fr", "ejemplo.es", "esempio.it",
           "voorbeeld.nl", "例子.中国", "bücher.example", "münchen.example", "sub.dept.example.co.uk", "uni-example.edu"]


def email_value() -> str:
    r = rng.random()
    name = rng.choice(FIRST)
    if r < 0.1:
        local = f'"{name} {rng.choice(["smith", "doe", "x"])}"'
    elif r < 0.3:
        local = f"{name}+{rng.choice(['news', 'tag', 'work'])}"
    elif r < 0.45:
        local = name.upper()
    else:
        local = name + (str(rng.randint(1, 99)) if rng.random() < 0.3 else "")
    return f"{local}@{rng.choice(DOMAINS)}"


def ipv4_value() -> str:
    r = rng.random()
    if r < 0.3:
        return f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
    if r < 0.5:
        return f"192.168.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
    return str(ipaddress.IPv4Address(rng.randint(0x01000000, 0xDFFFFFFF)))


def ipv6_value() -> str:
    r = rng.random()
    if r < 0.3:
        return f"2001:db8::{rng.randint(1, 0xffff):x}"
    if r < 0.5:
        return f"fe80::{rng.randint(1, 0xffff):x}:{rng.randint(1, 0xffff):x}"
    if r < 0.6:
        return f"::ffff:192.0.2.{rng.randint(1, 254)}"
    addr = ipaddress.IPv6Address(rng.getrandbits(128))
    return addr.exploded if rng.random() < 0.3 else str(addr)


# -- sentences --------------------------------------------------------------------------------------
T_PHONE = {
    "en": ["Call me at {v} after 5pm.", "My number is {v}, thanks!", "Reach the front desk on {v}.", "Tel: {v}",
           "You can text {v} anytime"],
    "de": ["Ruf mich unter {v} an.", "Meine Nummer: {v}", "Telefon {v} (werktags)", "Erreichbar unter {v}, bitte nach 18 Uhr."],
    "fr": ["Appelez-moi au {v}.", "Mon numéro est le {v}", "Tél. : {v}"],
    "es": ["Llámame al {v}.", "Mi teléfono es {v}", "Contacto: {v}"],
    "it": ["Chiamami al {v}.", "Il mio numero è {v}"],
    "nl": ["Bel me op {v}.", "Mijn nummer is {v}"],
    "zh": ["请拨打{v}联系我", "我的电话是{v}。", "手机：{v}", "有问题打{v}"],
    "ja": ["電話番号は{v}です", "連絡先：{v}"],
}
REGION_LANG = {"US": "en", "GB": "en", "DE": "de", "FR": "fr", "ES": "es", "IT": "it", "NL": "nl", "CN": "zh", "IN": "en",
               "JP": "ja", "BR": "en", "AU": "en", "KR": "en", "MX": "es"}
DEFAULT = ["US", "GB", "DE", "FR", "ES", "IT", "NL", "CN", "IN"]  # the gateway's default regions
T_GENERIC = {
    "card": {"en": ["Charge it to {v}, exp 09/27.", "card number {v}", "My Visa is {v}"],
             "de": ["Kartennummer {v}, gültig bis 12/26"], "fr": ["Ma carte : {v}"], "zh": ["银行卡号{v}"],
             "es": ["Tarjeta {v}"]},
    "iban": {"en": ["Please wire it to {v}.", "IBAN: {v}"], "de": ["Überweisung an {v}, Verwendungszweck Miete"],
             "fr": ["Virement sur le compte {v}"], "it": ["Bonifico su {v}"], "nl": ["Graag overmaken naar {v}"],
             "es": ["Transferencia a {v}"]},
    "ssn": {"en": ["SSN {v}", "My social security number is {v}.", "SSN: {v} (for the W-2)"]},
    "ssn_bare": {"en": ["SSN {v}", "Social Security No. {v}", "ssn#{v}"]},
    "cn_ric": {"zh": ["身份证号{v}", "身份证：{v}，请核对", "我的身份证号码是{v}"], "en": ["Resident ID {v}"]},
    "es_dni": {"es": ["Mi DNI es {v}", "DNI/NIE: {v}"], "en": ["Spanish ID {v}"]},
    "fr_nir": {"fr": ["Numéro de sécurité sociale : {v}", "NIR {v}"]},
    "it_cf": {"it": ["Codice fiscale: {v}", "Il mio CF è {v}"]},
    "de_idnr": {"de": ["Steuer-ID {v}", "Meine Steuer-Identifikationsnummer: {v}"]},
    "nl_bsn": {"nl": ["BSN {v}", "Mijn burgerservicenummer is {v}"]},
    "uk_nino": {"en": ["NI number {v}", "National Insurance: {v}"]},
    "eu_vat": {"en": ["VAT ID {v}", "Our VAT number is {v}."], "de": ["USt-IdNr. {v}"], "fr": ["TVA intracommunautaire {v}"],
               "it": ["Partita IVA {v}"]},
    "passport": {"en": ["Passport number {v}", "passport no. {v}, expires 2031"], "zh": ["护照号码：{v}"],
                 "de": ["Reisepassnummer {v}"], "fr": ["Passeport n° {v}"]},
    "email": {"en": ["Write to {v} for details.", "cc {v}", "Contact: {v}"], "de": ["Schreib an {v}."],
              "fr": ["Écrivez à {v}"], "zh": ["请联系{v}。", "邮箱：{v}"], "es": ["Escríbeme a {v}"], "ja": ["メールは{v}まで"]},
    "ipv4": {"en": ["Login from {v} at 02:14", "The server is at {v}:8080.", "http://{v}/admin", "blocked {v}"],
             "de": ["Zugriff von {v}"], "zh": ["来自{v}的请求"]},
    "ipv6": {"en": ["client [{v}]:443 connected", "from {v} ", "addr {v}"]},
}


def add(rows: list[dict], lang: str, group: str, note: str, text: str, pii: list[tuple[str, str]]) -> None:
    for _, v in pii:
        assert v in text, (v, text)
    rows.append({"id": len(rows) + 1, "lang": lang, "group": group, "note": note, "text": text,
                 "pii": [{"type": t, "value": v} for t, v in pii]})


def sentence(kind: str, v: str, lang: str | None = None) -> tuple[str, str]:
    table = T_GENERIC[kind]
    lang = lang or rng.choice(sorted(table))
    return lang, rng.choice(table[lang]).format(v=v)


def positives(rows: list[dict]) -> None:
    styles = ["national", "international", "e164", "00", "national_dashes", "national_compact", "dots"]
    for region in DEFAULT:
        for kind in (T.MOBILE, T.FIXED_LINE):
            for style in rng.sample(styles, 4):
                v = phone_text(phone(region, kind), style)
                lang = REGION_LANG[region]
                add(rows, lang, "pii", f"phone {region} {style}", rng.choice(T_PHONE[lang]).format(v=v), [("phone", v)])
    for region in ["JP", "BR", "AU", "KR", "MX"]:  # regions outside the defaults: written with their country code
        for style in ("international", "e164"):
            v = phone_text(phone(region, T.MOBILE), style)
            lang = REGION_LANG[region]
            add(rows, lang, "pii", f"phone {region} {style}", rng.choice(T_PHONE[lang]).format(v=v), [("phone", v)])
    for network in IIN:
        for style in ("spaced", "compact", "dashes4"):
            v = card_text(card(network), network, style)
            lang, text = sentence("card", v)
            add(rows, lang, "pii", f"card {network} {style}", text, [("card", v)])
    for cc in IBAN_BBAN:
        for style in ("spaced", "compact", "lower"):
            v = iban_text(iban_value(cc), style)
            lang, text = sentence("iban", v)
            add(rows, lang, "pii", f"iban {cc} {style}", text, [("iban", v)])
    for i in range(8):
        s = ssn_value()
        v = f"{s[:3]}-{s[3:5]}-{s[5:]}" if i % 2 == 0 else f"{s[:3]} {s[3:5]} {s[5:]}"
        lang, text = sentence("ssn", v)
        add(rows, lang, "pii", "ssn formatted", text, [("ssn", v)])
    for v in [ssn_value(), ssn_value(), "078051120"]:
        lang, text = sentence("ssn_bare", v)
        add(rows, lang, "pii", "ssn bare with context", text, [("ssn", v)])
    for i in range(10):
        v = ric_value()
        if i % 4 == 3:
            v = v[:-1] + v[-1].lower() if v.endswith("X") else v
        lang, text = sentence("cn_ric", v, "zh" if i < 8 else "en")
        add(rows, lang, "pii", "cn resident id", text, [("cn_ric", v)])
    for kind, make, n in (("es_dni", dni_value, 5), ("fr_nir", nir_value, 4), ("it_cf", cf_value, 4),
                          ("de_idnr", idnr_value, 4), ("nl_bsn", bsn_value, 4), ("uk_nino", nino_value, 4)):
        for i in range(n):
            v = make()
            if kind == "de_idnr" and i % 2:
                v = f"{v[:2]} {v[2:5]} {v[5:8]} {v[8:]}"
            if kind == "fr_nir" and i % 2:
                v = f"{v[0]} {v[1:3]} {v[3:5]} {v[5:7]} {v[7:10]} {v[10:13]} {v[13:]}"
            lang, text = sentence(kind, v)
            add(rows, lang, "pii", kind, text, [(kind, v)])
    for cc in VAT_FORMS:
        v = vat_value(cc)
        lang, text = sentence("eu_vat", v)
        add(rows, lang, "pii", f"vat {cc}", text, [("eu_vat", v)])
    for country in ("CN", "US", "DE", "FR", "GB", "CN"):
        v = passport_value(country)
        lang, text = sentence("passport", v, "zh" if country == "CN" and rng.random() < 0.5 else None)
        add(rows, lang, "pii", f"passport {country}", text, [("passport", v)])
    for _ in range(22):
        v = email_value()
        lang, text = sentence("email", v)
        add(rows, lang, "pii", "email", text, [("email", v)])
    for _ in range(12):
        v = ipv4_value()
        lang, text = sentence("ipv4", v)
        add(rows, lang, "pii", "ipv4", text, [("ipv4", v)])
    for _ in range(8):
        v = ipv6_value()
        lang, text = sentence("ipv6", v)
        add(rows, lang, "pii", "ipv6", text, [("ipv6", v)])
    # several kinds in one message, as support tickets carry them
    for _ in range(12):
        e, p = email_value(), phone_text(phone("US", T.MOBILE), "national")
        c = card_text(card("visa"), "visa", "spaced")
        add(rows, "en", "pii", "mixed", f"Hi, I'm reachable at {e} or {p}. Please refund card {c} today.",
            [("email", e), ("phone", p), ("card", c)])
    for _ in range(6):
        e, p, i = email_value(), phone_text(phone("DE", T.MOBILE), "national"), iban_text(iban_value("DE"), "spaced")
        add(rows, "de", "pii", "mixed", f"Kunde {e}, Tel. {p}, Konto {i}. Danke!", [("email", e), ("phone", p), ("iban", i)])
    for _ in range(6):
        p, r = phone_text(phone("CN", T.MOBILE), "national_compact"), ric_value()
        add(rows, "zh", "pii", "mixed", f"联系人手机{p}，身份证号{r}，地址见附件。", [("phone", p), ("cn_ric", r)])
    # not detected by a default gateway (no NER model): shown so the gap is measured, not hidden
    for text, values in [
        ("Please ship it to 221B Baker Street, London NW1 6XE.", [("address", "221B Baker Street, London NW1 6XE")]),
        ("Meine Adresse: Hauptstraße 5, 10115 Berlin", [("address", "Hauptstraße 5, 10115 Berlin")]),
        ("寄到北京市朝阳区建国路88号", [("address", "北京市朝阳区建国路88号")]),
        ("The patient, Margaret Thompson, was seen on Tuesday.", [("name", "Margaret Thompson")]),
        ("Ansprechpartner ist Herr Klaus Müller.", [("name", "Klaus Müller")]),
        ("负责人：王小明", [("name", "王小明")]),
        ("Signed, Jean-Pierre Dubois", [("name", "Jean-Pierre Dubois")]),
        ("1600 Amphitheatre Parkway, Mountain View, CA 94043", [("address", "1600 Amphitheatre Parkway, Mountain View, CA 94043")]),
    ]:
        add(rows, "en" if text.isascii() else "xx", "pii", "no default detector", text, values)


def lookalikes(rows: list[dict]) -> None:
    def d(n: int) -> str:
        return digits(n)

    def ts() -> tuple[str, str, str, str, str, str]:
        return (str(rng.randint(2019, 2026)), f"{rng.randint(1, 12):02d}", f"{rng.randint(1, 28):02d}",
                f"{rng.randint(0, 23):02d}", f"{rng.randint(0, 59):02d}", f"{rng.randint(0, 59):02d}")

    makers = [
        ("order", lambda: f"Order #{d(3)}-{d(3)}-{d(4)} has shipped."),
        ("order", lambda: f"Order no. {rng.randint(1, 9)}{d(9)} is delayed"),
        ("order", lambda: f"Ihre Bestellnummer lautet {rng.randint(1, 9)}{d(9)}."),
        ("order", lambda: f"订单号{rng.randint(1, 9)}{d(17)}已发货"),
        ("order", lambda: f"Invoice INV-{d(4)}-{d(6)} is due"),
        ("order", lambda: f"Ticket #{d(7)} was closed"),
        ("order", lambda: f"PO {d(8)} approved by finance"),
        ("order", lambda: f"Commande n° {rng.randint(1, 9)}{d(9)} expédiée"),
        ("order", lambda: f"Case {d(3)}-{d(3)}-{d(4)} escalated"),
        ("timestamp", lambda: "at {}-{}-{} {}:{}:{} UTC".format(*ts())),
        ("timestamp", lambda: "{}-{}-{}T{}:{}:{}Z build finished".format(*ts())),
        ("timestamp", lambda: "logged {2}.{1}.{0} {3}:{4}".format(*ts())),
        ("timestamp", lambda: f"epoch {rng.randint(1_600_000_000, 1_800_000_000)}"),
        ("timestamp", lambda: f"ts={rng.randint(1_600_000_000_000, 1_800_000_000_000)}"),
        ("timestamp", lambda: "{}年{}月{}日 {}:{}".format(*ts()[:5])),
        ("date", lambda: "due {2}/{1}/{0}".format(*ts())),
        ("date", lambda: "from {0}-{1}-{2} to {0}-{1}-{2}".format(*ts())),
        ("version", lambda: f"version {rng.randint(1, 9)}.{rng.randint(0, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 99)}"),
        ("version", lambda: f"upgrade to v{rng.randint(1, 20)}.{rng.randint(0, 20)}.{rng.randint(0, 30)}"),
        ("version", lambda: f"Chrome {rng.randint(100, 130)}.0.{rng.randint(1000, 6999)}.{rng.randint(10, 200)}"),
        ("version", lambda: f"build {rng.randint(1, 12)}.{rng.randint(0, 9)}.{rng.randint(0, 9)}.{rng.randint(0, 250)} released"),
        ("version", lambda: f"see section {rng.randint(1, 9)}.{rng.randint(1, 9)}.{rng.randint(1, 9)}.{rng.randint(1, 9)}"),
        ("version", lambda: f"版本 {rng.randint(1, 9)}.{rng.randint(0, 9)}.{rng.randint(0, 9)}.{rng.randint(0, 99)}"),
        ("oid", lambda: f"OID 1.3.6.1.4.1.{rng.randint(1, 60000)}"),
        ("tracking", lambda: f"Tracking 1Z{''.join(rng.choice(string.ascii_uppercase + D) for _ in range(6))}{d(10)}"),
        ("tracking", lambda: f"USPS tracking {d(4)} {d(4)} {d(4)} {d(4)} {d(4)} {d(2)}"),
        ("tracking", lambda: f"FedEx {d(12)} out for delivery"),
        ("tracking", lambda: f"DHL JD{d(18)}"),
        ("tracking", lambda: f"快递单号SF{d(13)}"),
        ("isbn", lambda: f"ISBN 978-{rng.randint(0, 9)}-{d(2)}-{d(6)}-{rng.randint(0, 9)}"),
        ("amount", lambda: f"Total: ${rng.randint(1, 999)},{d(3)},{d(3)}.{d(2)}"),
        ("amount", lambda: f"Betrag {rng.randint(1, 999)}.{d(3)}.{d(3)},{d(2)} €"),
        ("coordinates", lambda: f"at {rng.uniform(-80, 80):.6f}, {rng.uniform(-170, 170):.6f}"),
        ("uuid", lambda: f"request id {__import__('uuid').UUID(int=rng.getrandbits(128))}"),
        ("hash", lambda: f"commit {rng.getrandbits(160):040x}"),
        ("code", lambda: f"error 0x{rng.getrandbits(32):08X} in module"),
        ("code", lambda: f"ISO {rng.choice(['27001', '9001', '8601'])}, RFC {rng.randint(1000, 9999)}"),
        ("code", lambda: f"room {rng.randint(100, 999)}, ext. {d(4)}, flight LH {rng.randint(100, 999)}"),
        ("math", lambda: f"{d(2)} + {d(2)} = {d(3)}, x in [{d(1)}, {d(2)}]"),
        ("score", lambda: f"final score {rng.randint(80, 130)}-{rng.randint(80, 130)}"),
        ("zip", lambda: f"{d(5)} Berlin, {rng.choice(['SW1A 1AA', 'EC1A 1BB'])}"),
        ("port", lambda: f"listening on localhost:{rng.randint(1024, 65535)} and 0.0.0.0:{rng.randint(1024, 65535)}"),
        ("time", lambda: f"lap {rng.randint(1, 59)}:{rng.randint(10, 59)}.{d(3)} then {rng.randint(10, 23)}:{rng.randint(10, 59)}:{rng.randint(10, 59)}"),
        ("mac", lambda: "MAC " + ":".join(f"{rng.randint(0, 255):02X}" for _ in range(6))),
        ("handle", lambda: f"ping @{rng.choice(FIRST).replace('.', '_')} on chat, user at example dot com"),
        ("sku", lambda: f"SKU {d(4)}-{d(4)}-{d(4)}"),
        ("measure", lambda: f"{rng.randint(10, 99)}.{d(3)} kg and {rng.randint(100, 999)}.{d(2)} m"),
        ("phone_like", lambda: f"reference {d(3)} {d(3)} {d(4)}"),
    ]
    per = -(-130 // len(makers))  # ceil: about 130 look-alikes in all
    for note, make in makers:
        for _ in range(per):
            text = make()
            add(rows, "zh" if any("\u4e00" <= c <= "\u9fff" for c in text) else "xx", "lookalike", note, text, [])


# Written by hand, before the detectors were run on them: the cases the issue reported, and more of
# the same kind in the way people type them. Kept apart ("note": "hand") so their score can be read alone.
HAND_PII = [
    ("de", "Ruf an: 030 12345678", [("phone", "030 12345678")]),
    ("de", "Tel. +49 30 1234567 (Zentrale)", [("phone", "+49 30 1234567")]),
    ("de", "Handy 0171 1234567", [("phone", "0171 1234567")]),
    ("de", "Büro: 089 / 12 34 56 78", [("phone", "089 / 12 34 56 78")]),
    ("de", "erreichbar unter +49 (0)211 987654", [("phone", "+49 (0)211 987654")]),
    ("zh", "我的手机号是+8613800138000", [("phone", "+8613800138000")]),
    ("zh", "打13800138000找我", [("phone", "13800138000")]),
    ("zh", "座机 010-62345678", [("phone", "010-62345678")]),
    ("en", "call 4155552671 tomorrow", [("phone", "4155552671")]),
    ("en", "my mobile is 07700 900123", [("phone", "07700 900123")]),
    ("en", "phone: +44 20 7946 0958", [("phone", "+44 20 7946 0958")]),
    ("en", "Call (212) 736-5000 or 1-800-555-0199", [("phone", "(212) 736-5000"), ("phone", "1-800-555-0199")]),
    ("fr", "Appelle le 06 12 34 56 78 ce soir", [("phone", "06 12 34 56 78")]),
    ("en", "Amex 3714 496353 98431 on file", [("card", "3714 496353 98431")]),
    ("en", "card 5555-5555-5555-4444", [("card", "5555-5555-5555-4444")]),
    ("en", "pay with 4012888888881881 please", [("card", "4012888888881881")]),
    ("de", "iban de89 3704 0044 0532 0130 00", [("iban", "de89 3704 0044 0532 0130 00")]),
    ("en", "send to gb82west12345698765432", [("iban", "gb82west12345698765432")]),
    ("fr", "IBAN FR14 2004 1010 0505 0001 3M02 606", [("iban", "FR14 2004 1010 0505 0001 3M02 606")]),
    ("en", "SSN 078051120", [("ssn", "078051120")]),
    ("en", "ssn: 219-09-9999", [("ssn", "219-09-9999")]),
    ("de", "Mail an müller@beispiel.de bitte", [("email", "müller@beispiel.de")]),
    ("en", 'quoted "jane doe"@example.org works too', [("email", '"jane doe"@example.org')]),
    ("zh", "邮箱是zhang.wei@公司.中国", [("email", "zhang.wei@公司.中国")]),
    ("en", "First.Last+promo@Sub.Example.COM", [("email", "First.Last+promo@Sub.Example.COM")]),
    ("zh", "身份证11010519491231002X", [("cn_ric", "11010519491231002X")]),
    ("zh", "身份证号码：11010519491231002x", [("cn_ric", "11010519491231002x")]),
    ("es", "DNI 12345678Z", [("es_dni", "12345678Z")]),
    ("en", "NINO QQ 12 34 56 C", [("uk_nino", "QQ 12 34 56 C")]),
    ("de", "USt-IdNr.: DE136695976", [("eu_vat", "DE136695976")]),
    ("en", "passport: E12345678", [("passport", "E12345678")]),
    ("en", "server 203.0.113.7 refused", [("ipv4", "203.0.113.7")]),
    ("en", "v6 peer 2001:db8:85a3::8a2e:370:7334 up", [("ipv6", "2001:db8:85a3::8a2e:370:7334")]),
]
HAND_LOOKALIKES = [
    "Order #123-456-7890", "2024-11-23 14:05:33", "version 1.2.3.4", "Order #212-555-0188 shipped",
    "timestamp 2024-11-23T14:05:33.123+01:00", "on 23.11.2024 um 14:05", "v2.4.10 changelog", "release 10.2.0.1",
    "ISBN 978-3-16-148410-0", "tracking 1Z999AA10123456784", "UUID 123e4567-e89b-12d3-a456-426614174000",
    "sha256 9f86d081884c7d659a2feaa0c55ad015", "price $1,299.00", "room 4521, floor 12", "version 2.0.0.0 and 3.1.4.1",
    "订单号：202411231405331234", "quarterly revenue 1234567890 USD", "call me maybe", "at 10:30-11:45",
    "12/25/2024 and 25.12.2024", "IPv4 example: use a.b.c.d notation", "item 4-8-15-16-23-42", "score 3-2 after 90 min",
    "Postleitzahl 10115, Hausnummer 12", "build 20241123.1405", "ticket 4155552671", "invoice no. 07700900123",
]


def hand(rows: list[dict]) -> None:
    for lang, text, values in HAND_PII:
        add(rows, lang, "pii", "hand", text, values)
    for text in HAND_LOOKALIKES:
        add(rows, "zh" if any("\u4e00" <= c <= "\u9fff" for c in text) else "xx", "lookalike", "hand", text, [])


def main() -> int:
    rows: list[dict] = []
    positives(rows)
    lookalikes(rows)
    hand(rows)
    with OUT.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    n_pii = sum(len(r["pii"]) for r in rows)
    print(f"{OUT}: {len(rows)} strings, {n_pii} PII values, {sum(r['group'] == 'lookalike' for r in rows)} look-alikes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
