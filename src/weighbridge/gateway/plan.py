"""The routing plan (YAML): named routes → weighted upstreams, fallback chain, cascade, policies.

Only the upstreams named here are ever called; a client cannot supply a base URL. Everything the
gateway does to a request (cache, redaction, filters, audit, budgets) is declared here, so a plan
file is also the review document for what the gateway will do with a team's traffic.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from ..core.prices import Strict, TokenPrice
from ..core.yamlsource import load_mapping




class Upstream(Strict):
    name: str
    base_url: str | None = Field(None, description="an OpenAI-compatible server (…/v1)")
    bundled: str | None = Field(None, description="a bundled model alias: serve starts llama.cpp's server for it")
    path: str | None = Field(None, description="a GGUF file: serve starts llama.cpp's server for it")
    model: str | None = Field(None, description="the server's model id (default: the bundled alias or file stem)")
    api_key_env: str | None = Field(None, description="env var holding the upstream's key (never logged)")
    weight: float = Field(1.0, gt=0)
    price: TokenPrice = Field(default_factory=TokenPrice)
    extra_body: dict[str, Any] = Field(default_factory=dict,
                                       description="fields merged into every request to it (e.g. response_format)")

    @field_validator("base_url")
    @classmethod
    def _http(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError("base_url must start with http:// or https://")
        return v.rstrip("/") if v else v

    @model_validator(mode="after")
    def _where(self) -> "Upstream":
        if sum(x is not None for x in (self.base_url, self.bundled, self.path)) != 1:
            raise ValueError("an upstream needs exactly one of base_url, bundled (an alias) or path (a GGUF)")
        if self.base_url is not None and not self.model:
            raise ValueError("an upstream with base_url needs 'model' (the server's model id)")
        if self.model is None:
            self.model = self.bundled or Path(str(self.path)).stem
        return self

    @property
    def is_local(self) -> bool:
        """Upstreams on this machine: by default, prompts to them are not redacted."""
        from ..core.net import url_is_this_machine

        return url_is_this_machine(self.base_url)


class RouteCache(Strict):
    enabled: bool = True
    ttl_s: float = Field(3600.0, gt=0)
    nondeterministic: bool = Field(False, description="also cache requests with temperature > 0")


class Route(Strict):
    upstreams: list[Upstream] = Field(min_length=1, description="load-balanced by weight (the draft tier)")
    fallback: list[Upstream] = Field(default_factory=list, description="tried in order when the chosen one fails")
    check: list[str | dict[str, Any]] = Field(default_factory=list,
                                              description="scorers a draft must pass (a cascade when escalate is set)")
    expected: Any = Field(None, description="the scorers' expected value, if they need one")
    escalate: list[Upstream] = Field(default_factory=list, description="stronger tiers, tried in order on a failed check")
    connect_timeout_s: float = Field(5.0, gt=0)
    first_token_timeout_s: float = Field(60.0, gt=0, description="also the longest silence allowed mid-stream")
    total_timeout_s: float = Field(300.0, gt=0)
    max_tokens: int | None = Field(None, ge=1, description="cap on a request's max_tokens")
    cache: RouteCache | None = Field(None, description="response cache for this route (off when absent)")
    redact_upstream: Literal["auto", "always", "never"] = Field(
        "auto", description="mask PII before the request leaves: auto = only for non-loopback upstreams")
    reasoning: Literal["pass", "drop"] = Field(
        "pass", description="a reasoning model's thinking (reasoning_content): pass it to the client, or drop it; "
                            "either way it is metered, audited redacted as its own field, and never cached")

    @field_validator("check")
    @classmethod
    def _scorers(cls, v: list[str | dict[str, Any]]) -> list[str | dict[str, Any]]:
        from ..scorers import build_scorer

        for spec in v:
            build_scorer(spec)  # a typo in a check fails at load time, not on the first request
        return v

    @model_validator(mode="after")
    def _cascade(self) -> Route:
        if self.escalate and not self.check:
            raise ValueError("'escalate' needs a 'check': the scorers that decide when to escalate")
        return self

    def tiers(self) -> list[list[Upstream]]:
        """Draft tier (its upstreams then fallback), then one tier per escalation step."""
        return [list(self.upstreams) + list(self.fallback)] + [[u] for u in self.escalate]

    def all_upstreams(self) -> list[Upstream]:
        return [u for tier in self.tiers() for u in tier]


def _compiles(pattern: str, what: str) -> None:
    try:
        re.compile(pattern)
    except re.error as e:
        raise ValueError(f"{what}: {e}") from None


class Filters(Strict):
    """Block lists (regexes, case-insensitive) and an allow list of exact strings never masked or blocked."""

    prompt_block: list[str] = Field(default_factory=list)
    response_block: list[str] = Field(default_factory=list)
    allow: list[str] = Field(default_factory=list, description="literal strings exempt from redaction and blocking")

    @field_validator("prompt_block", "response_block")
    @classmethod
    def _regexes(cls, v: list[str]) -> list[str]:
        for p in v:
            _compiles(p, f"not a valid regex {p!r}")
        return v


class Redaction(Strict):
    detectors: list[str] = Field(default_factory=lambda: ["email", "phone", "card", "iban", "ip", "national_id",
                                                          "vat", "passport"])
    patterns: dict[str, str] = Field(default_factory=dict, description="extra detectors: name -> regex")
    regions: list[str] = Field(default_factory=lambda: list(_default_regions()),
                               description="phone numbering plans tried for numbers written without +country code")

    @field_validator("detectors")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        from .pii import DETECTOR_NAMES

        unknown = [d for d in v if d not in DETECTOR_NAMES]
        if unknown:
            raise ValueError(f"unknown detector(s) {unknown} (known: {', '.join(DETECTOR_NAMES)})")
        return v

    @field_validator("patterns")
    @classmethod
    def _regexes(cls, v: dict[str, str]) -> dict[str, str]:
        from .pii import DETECTOR_NAMES

        for name, p in v.items():
            if name in DETECTOR_NAMES:
                raise ValueError(f"pattern '{name}' has the name of a built-in detector; pick another")
            _compiles(p, f"pattern '{name}' is not a valid regex")
        return v

    @field_validator("regions")
    @classmethod
    def _regions(cls, v: list[str]) -> list[str]:
        from .pii import known_region

        bad = [r for r in v if not known_region(r)]
        if bad:
            raise ValueError(f"unknown phone region(s) {bad}: use ISO 3166 codes such as US, GB, DE, CN")
        if not v:
            raise ValueError("name at least one phone region")
        return v


def _default_regions() -> list[str]:
    from .pii import DEFAULT_REGIONS

    return DEFAULT_REGIONS


class AuditSettings(Strict):
    url: str = Field("gateway.db", description="a SQLite path, or postgresql://… for a Postgres server")
    head: str | None = Field(None, description="where the chain's head is anchored after every commit: a file "
                                               "path or postgresql://… (default: <url>.head.json beside a SQLite "
                                               "log, a table in the log's own Postgres)")
    hmac_key_env: str = Field("WEIGHBRIDGE_AUDIT_KEY", description="env var holding the key that signs each record "
                                                                  "and the head (HMAC-SHA256); unset: unsigned")
    store_text: bool = Field(False, description="keep the redacted prompt and response text, not only their hashes")
    sync: bool = Field(True, description="answer only after the request's audit record is committed")


class HttpLimits(Strict):
    """What one client connection may send; over a limit it gets 4xx and the connection is closed."""

    max_headers: int = Field(100, ge=8, description="header fields per request (431 beyond)")
    max_header_bytes: int = Field(32 * 1024, ge=1024, description="all header fields together (431 beyond)")
    max_url_bytes: int = Field(8 * 1024, ge=256, description="request target length (414 beyond)")
    header_timeout_s: float = Field(10.0, gt=0, description="time to send the request line and headers (408)")
    body_timeout_s: float = Field(30.0, gt=0, description="time to send the body once headers are in (408)")
    keep_alive_s: float = Field(5.0, gt=0, description="an idle kept-alive connection is closed after this")
    max_connections: int = Field(1024, ge=1, description="concurrent connections; beyond, new ones get 503")
    drain_s: float = Field(1.0, ge=0, description="on SIGTERM, /readyz answers 503 this long before the gateway "
                                                  "stops accepting, so a load balancer drains it first")
    shutdown_grace_s: int = Field(30, ge=1, description="then requests and streams in flight get this long to finish")
    max_connections_per_client: int = Field(
        128, ge=0, description="concurrent connections from one client address (beyond, closed at once with 503; "
                               "0: no bound - behind a proxy every client has the proxy's address)")
    max_in_flight_per_key: int = Field(256, ge=0, description="requests one API key may have in flight (429 beyond; "
                                                             "0: no bound)")
    # what an upstream may send back: it is read as hostile input
    upstream_body_bytes: int = Field(16 << 20, ge=1024, description="a non-streamed upstream answer larger than "
                                                                    "this is refused (the next upstream is tried)")
    upstream_stream_bytes: int = Field(256 << 20, ge=1024, description="a streamed upstream answer is cut past "
                                                                       "this many bytes")
    upstream_line_bytes: int = Field(4 << 20, ge=1024, description="one line (or event) of an upstream stream")


class Plan(Strict):
    routes: dict[str, Route] = Field(min_length=1)
    default_route: str | None = Field(None, description="the route for a request that names no model")
    unknown_models: Literal["refuse", "default_route"] = Field(
        "refuse", description="a model name that is no route: refused with 404 model_not_found (a client must not "
                              "get another model than it asked for in silence), or served by default_route")
    state: str = Field("gateway.db", description="keys and settled spend: a SQLite file (one process), or "
                                                 "postgresql://… shared by every gateway process (needs redis:)")
    redis: str | None = Field(None, description="redis://… holding rate-limit windows and budget reservations, "
                                                "shared by every gateway process (and the cache, unless cache: says)")
    cache: str | None = Field(None, description="redis://… for a shared cache (default: redis:, else the state file)")
    audit: AuditSettings = Field(default_factory=AuditSettings)
    redaction: Redaction = Field(default_factory=Redaction)
    filters: Filters = Field(default_factory=Filters)
    judges: dict[str, Upstream] = Field(default_factory=dict, description="models a 'judge' check may call")
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024, description="larger request bodies get 413 before "
                                                                      "they are read or parsed")
    http: HttpLimits = Field(default_factory=HttpLimits)
    sandbox: Literal["bubblewrap", "unsafe-local"] = Field(
        "bubblewrap", description="isolation for python_tests checks; unsafe-local runs model code unisolated")
    reserve_max_tokens: int = Field(1024, ge=1, description="tokens reserved against a budget when a request "
                                                            "sets no max_tokens and its route no cap")
    reserve_prompt_overhead: int = Field(64, ge=0, description="tokens a chat template may add to a prompt, "
                                                                 "reserved on top of one token per request byte")
    base_dir: Path = Field(Path("."), exclude=True)

    @model_validator(mode="after")
    def _shared_state(self) -> Plan:
        if self.state.startswith(("postgresql://", "postgres://")) and not self.redis:
            raise ValueError("state: postgresql://… is shared by several gateway processes; their rate windows and "
                             "budget reservations must be shared too: add redis: redis://…")
        for name in ("redis", "cache"):
            url = getattr(self, name)
            if url is not None and not url.startswith(("redis://", "rediss://", "unix://")):
                raise ValueError(f"{name}: {url!r} is not a redis:// URL")
        if "://" in self.state and not self.state.startswith(("postgresql://", "postgres://")):
            raise ValueError(f"state: {self.state!r}: use a SQLite path or postgresql://…")
        return self

    @property
    def shared(self) -> bool:
        """Whether rate windows and budgets live outside this process (several gateway processes may serve)."""
        return self.redis is not None

    @model_validator(mode="after")
    def _default_exists(self) -> Plan:
        if self.default_route is not None and self.default_route not in self.routes:
            raise ValueError(f"default_route '{self.default_route}' is not one of the routes")
        if self.unknown_models == "default_route" and self.default_route is None:
            raise ValueError("unknown_models: default_route needs a default_route")
        return self

    def audit_head(self) -> str:
        """The resolved place of the audit chain's anchored head."""
        from .audit import default_head

        return self.resolve(self.audit.head) if self.audit.head else default_head(self.resolve(self.audit.url))

    def resolve(self, p: str) -> str:
        """Relative paths in a plan are relative to the plan file, not to where serve was started."""
        if "://" in p or p == ":memory:":
            return p
        path = Path(p)
        return str(path if path.is_absolute() else self.base_dir / path)


def load_plan(path: str | Path) -> Plan:
    plan = load_mapping(path, Plan, expected="a plan is a mapping with 'routes:'")
    plan.base_dir = Path(path).resolve().parent
    return plan
