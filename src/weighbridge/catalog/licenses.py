"""License terms as data, and the verdict for a deployment profile with the clause behind it.

Each rule's condition is evaluated in three-valued logic: true, false, or unknown (the profile
lacks the fact). A rule that would apply if an unknown fact were true makes the verdict
"needs review" and names the missing fact. The worst outcome wins:
not allowed > needs review > allowed with duties > allowed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..core.errors import ConfigError
from ..core.hashing import license_fingerprint, sha256_text
from ..core.yamlsource import load_yaml, validation_error
from .profile import Profile

Effect = Literal["not_allowed", "needs_review", "duty", "info"]
VerdictName = Literal["allowed", "allowed_with_duties", "needs_review", "not_allowed"]
_RANK = {"allowed": 0, "allowed_with_duties": 1, "needs_review": 2, "not_allowed": 3}
_FLAGS = {"always", "commercial", "serves_third_parties", "customer_facing", "offered_as_api", "fine_tuning",
          "distillation", "redistribute_weights", "makes_derivative_available", "multimodal"}
_KEYED = {"mau_over", "annual_revenue_over", "region_in", "sector_in", "any"}


def _check_condition(c: Any) -> None:
    if isinstance(c, str):
        if c not in _FLAGS:
            raise ValueError(f"unknown condition '{c}' (known: {', '.join(sorted(_FLAGS))})")
        return
    if not isinstance(c, dict) or len(c) != 1 or next(iter(c)) not in _KEYED:
        raise ValueError(f"a condition is a name or one of {sorted(_KEYED)}: got {c!r}")
    if "any" in c:
        for sub in c["any"]:
            _check_condition(sub)


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    when: list[Any] = Field(min_length=1)
    effect: Effect
    duty: str
    section: str
    quote: str = Field(min_length=10)
    # verbatim: read in the license file itself; transcribed: the words as independent copies of
    # the file give them (the vendor's file was not read here); paraphrase: not the vendor's words.
    quote_kind: Literal["verbatim", "transcribed", "paraphrase"] = "verbatim"

    @field_validator("when")
    @classmethod
    def _conditions(cls, v: list[Any]) -> list[Any]:
        for c in v:
            _check_condition(c)
        return v


class License(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    name: str
    spdx: str
    aliases: list[str] = Field(default_factory=list)
    source: str
    text: str | None = None
    text_note: str | None = None
    # A text weighbridge does not ship is pinned by the fingerprint of one copy the catalog names
    # (`text_hashed_from`); `text_start`/`text_end` bound the terms inside a longer file or page.
    text_fingerprint: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    text_hashed_from: str | None = None
    text_start: str | None = None
    text_end: str | None = None
    commercial: Literal["yes", "registration", "no", "non-production"]
    rules: list[Rule] = Field(default_factory=list)

    @property
    def text_sha256(self) -> str | None:
        if not self.text:
            return None
        return sha256_text(self.license_text())

    @property
    def fingerprint(self) -> str | None:
        """The words-only sha256 (see ``hashing.license_words``) a copy of this license must have."""
        if self.text:
            return self.fingerprint_of(self.license_text())
        return self.text_fingerprint

    def fingerprint_of(self, text: str, *, html: bool = False) -> str:
        return license_fingerprint(text, start=self.text_start, end=self.text_end, html=html)

    def license_text(self) -> str:
        return (resources.files("weighbridge.catalog") / "data" / self.text).read_text(encoding="utf-8")


def _fact(profile: Profile, cond: Any) -> tuple[bool | None, str | None]:
    """(value, missing fact name) for one condition."""
    if isinstance(cond, str):
        if cond == "always":
            return True, None
        if cond == "customer_facing":
            return profile.deployment == "customer_facing", None
        return bool(getattr(profile, cond)), None
    key, arg = next(iter(cond.items()))
    if key == "mau_over":
        v = profile.monthly_active_users
        return (None, "monthly_active_users") if v is None else (v > arg, None)
    if key == "annual_revenue_over":
        v = profile.annual_revenue_usd
        return (None, "annual_revenue_usd") if v is None else (v > arg, None)
    if key == "region_in":
        return bool({r.upper() for r in profile.regions} & {r.upper() for r in arg}), None
    if key == "sector_in":
        return (None, "sector") if profile.sector is None else (profile.sector.lower() in [s.lower() for s in arg], None)
    # any: true if one is true; false if all false; else unknown
    results = [_fact(profile, c) for c in arg]
    if any(v is True for v, _ in results):
        return True, None
    missing = [m for v, m in results if v is None]
    return (None, " or ".join(missing)) if missing else (False, None)


def evaluate(rule: Rule, profile: Profile) -> tuple[bool | None, list[str]]:
    """Does the rule apply? True/False, or None with the missing facts."""
    missing: list[str] = []
    for cond in rule.when:
        value, lacking = _fact(profile, cond)
        if value is False:
            return False, []
        if value is None and lacking:
            missing.append(lacking)
    return (None, missing) if missing else (True, [])


@dataclass
class Finding:
    rule: Rule
    outcome: Literal["not_allowed", "needs_review", "duty", "info"]
    why: str


@dataclass
class Verdict:
    license: License | None
    verdict: VerdictName
    findings: list[Finding] = field(default_factory=list)
    reason: str = ""
    caveats: list[str] = field(default_factory=list)  # what the verdict rests on that was not checked

    def to_dict(self) -> dict[str, Any]:
        return {"license": self.license.id if self.license else None, "caveats": self.caveats,
                "license_name": self.license.name if self.license else None,
                "source": self.license.source if self.license else None,
                "verdict": self.verdict, "reason": self.reason,
                "findings": [{"rule": f.rule.id, "outcome": f.outcome, "why": f.why, "section": f.rule.section,
                              "quote": f.rule.quote, "quote_kind": f.rule.quote_kind} for f in self.findings]}


def verdict_for(lic: License | None, profile: Profile, unknown_reason: str = "") -> Verdict:
    if lic is None:
        return Verdict(None, "needs_review", reason=unknown_reason or "license unknown: never assumed allowed")
    findings: list[Finding] = []
    worst: VerdictName = "allowed"
    for rule in lic.rules:
        applies, missing = evaluate(rule, profile)
        if applies is False or (applies is None and rule.effect == "info"):
            continue
        if applies is None:
            findings.append(Finding(rule, "needs_review", f"the profile does not say {', '.join(missing)}: {rule.duty}"))
            outcome: VerdictName = "needs_review"
        elif rule.effect == "info":
            findings.append(Finding(rule, "info", rule.duty))
            continue
        elif rule.effect == "duty":
            findings.append(Finding(rule, "duty", rule.duty))
            outcome = "allowed_with_duties"
        else:
            findings.append(Finding(rule, rule.effect, rule.duty))
            outcome = rule.effect
        if _RANK[outcome] > _RANK[worst]:
            worst = outcome
    reason = {"allowed": "no clause restricts this profile", "allowed_with_duties": "allowed if you meet the duties below",
              "needs_review": "a clause depends on facts the profile leaves out", "not_allowed": "a clause forbids this profile"}[worst]
    caveats = [] if lic.fingerprint else [
        f"the catalog's rules for {lic.id} were never checked against a full copy of its text (no text fingerprint "
        f"recorded): read the terms at {lic.source} before relying on this verdict"]
    return Verdict(lic, worst, findings, reason, caveats)


class LicenseBook:
    """All license records, looked up by id or by any alias a model file or card may use."""

    def __init__(self, licenses: list[License], as_of: str) -> None:
        self.licenses = licenses
        self.as_of = as_of
        self._by_key: dict[str, License] = {}
        for lic in licenses:
            for key in [lic.id, lic.spdx, *lic.aliases]:
                self._by_key[key.strip().lower()] = lic

    def get(self, key: str | None) -> License | None:
        return None if not key else self._by_key.get(key.strip().lower())

    def match_text(self, text: str, *, html: bool = False) -> License | None:
        """The license whose recorded text this is, word for word (layout, quotes and case aside)."""
        for lic in self.licenses:
            if lic.fingerprint and lic.fingerprint_of(text, html=html) == lic.fingerprint:
                return lic
        return None


@cache
def load_licenses() -> LicenseBook:
    path = "weighbridge/catalog/data/licenses.yaml"
    text = (resources.files("weighbridge.catalog") / "data" / "licenses.yaml").read_text(encoding="utf-8")
    src = load_yaml(path, text)
    items = []
    for i, raw in enumerate(src.data["licenses"]):
        try:
            items.append(License.model_validate(raw))
        except ValidationError as e:
            raise validation_error(e, src, path, prefix=("licenses", i)) from None
    ids = [x.id for x in items]
    if len(ids) != len(set(ids)):
        raise ConfigError("duplicate license id", path=path)
    return LicenseBook(items, str(src.data["as_of"]))
