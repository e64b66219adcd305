"""A deployment scenario (``weighbridge cost``): the traffic, its latency SLO, the overheads, and
the options it is priced against. Validated like every config: errors name file, line and field.

Units are stated in the field names: requests per day or month, tokens per request, hours,
USD. Nothing here is a figure weighbridge invents: throughput comes from stored bench runs,
pass rates from stored bakeoff runs, API prices from the price sheet (or the scenario's own lines).
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from ..core.errors import ConfigError
from ..core.prices import Strict, TokenPrice
from ..core.yamlsource import load_mapping, load_yaml, validation_error




def _duration_ms(value: object) -> float:
    """'800ms', '2s', '1.5 s' or a number of milliseconds."""
    from ..bench.metrics import parse_duration_ms

    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    try:
        return parse_duration_ms(str(value).replace(" ", ""))
    except ValueError:
        raise ValueError(f"{value!r} is not a duration: write e.g. 800ms or 2s") from None


class LatencySLO(Strict):
    """What a bench level must meet to count: its percentile of TTFT / E2E / TPOT at or under these."""

    ttft: float | None = Field(None, description="time to first token, e.g. 1s")
    e2e: float | None = Field(None, description="request sent → last token, e.g. 6s")
    tpot: float | None = Field(None, description="time per output token, e.g. 80ms")
    percentile: Literal["p50", "p90", "p95", "p99"] = "p95"

    @field_validator("ttft", "e2e", "tpot", mode="before")
    @classmethod
    def _ms(cls, v: object) -> float | None:
        return None if v is None else _duration_ms(v)

    def describe(self) -> str:
        parts = [f"{k} {self.percentile} ≤ {_fmt_ms(v)}" for k, v in (("ttft", self.ttft), ("e2e", self.e2e),
                                                                      ("tpot", self.tpot)) if v is not None]
        return ", ".join(parts) or "none"


def _fmt_ms(v: float) -> str:
    return f"{v / 1000:g} s" if v >= 1000 else f"{v:g} ms"


class Tokens(Strict):
    """Tokens per request: given, or the mean of a model's answers in a stored bakeoff run."""

    input: float | None = Field(None, gt=0)
    output: float | None = Field(None, gt=0)
    from_run: str | None = Field(None, description="'latest' or a run id: take the mean tokens per request from it")
    model: str | None = Field(None, description="with from_run: whose requests (a model of that run)")

    @model_validator(mode="after")
    def _one_source(self) -> "Tokens":
        given = self.input is not None and self.output is not None
        if self.from_run is None and not given:
            raise ValueError("give input and output tokens per request, or from_run (and model)")
        if self.from_run is not None and self.model is None:
            raise ValueError("from_run needs model: the model of that run whose requests to measure")
        return self


class Ops(Strict):
    hours_per_month: float = Field(0, ge=0)
    usd_per_hour: float = Field(0, ge=0)


class Egress(Strict):
    gb_per_month: float = Field(0, ge=0)
    usd_per_gb: float = Field(0, ge=0)


class Quality(Strict):
    """Where an option's pass rate comes from: a model of a stored bakeoff run."""

    run: str = Field("latest", description="'latest' or a run id")
    model: str | None = None


class PriceLine(TokenPrice):
    """One managed API's per-token prices, with where they were read and when."""

    id: str = Field(min_length=1)
    provider: str | None = None
    model: str | None = None
    input_per_mtok: float = Field(ge=0)
    cached_input_per_mtok: float | None = Field(None, ge=0)
    output_per_mtok: float = Field(ge=0)
    source: str = Field(min_length=1, description="where the prices were read (a URL)")
    as_of: str = Field(min_length=1, description="the date the source states, or the day it was read")
    note: str | None = None

    def input_rate(self, cached_share: float = 0.0) -> float:
        cached = self.cached_input_per_mtok if self.cached_input_per_mtok is not None else self.input_per_mtok
        return cached_share * cached + (1 - cached_share) * self.input_per_mtok


class PriceSheet(Strict):
    sheet_date: str
    lines: list[PriceLine]

    def get(self, key: str) -> PriceLine | None:
        return next((p for p in self.lines if p.id == key), None)


class Option(Strict):
    """One way to serve the scenario."""

    name: str = Field(min_length=1)
    kind: Literal["owned", "rented", "api"]
    # owned hardware: capex over its lifetime (+ power), or an all-in $/hour; rented: $/hour while operating
    capex_usd: float | None = Field(None, ge=0)
    lifetime_months: float | None = Field(None, gt=0)
    power_usd_per_month: float = Field(0, ge=0)
    usd_per_hour: float | None = Field(None, ge=0)
    always_on: bool | None = Field(None, description="rented: bill 24 h a day, not only the hours of operation")
    bench: str = Field("latest", description="'latest' (of this option's model) or a bench id")
    bench_level: float | None = Field(None, description="use this level of the bench instead of the best meeting the SLO")
    # api
    price: str | None = Field(None, description="a price sheet id, e.g. openai/gpt-4o-mini")
    # both
    model: str | None = Field(None, description="self-hosted: the bench target and bakeoff model; api: the bakeoff "
                                                "model that stands for it, if any")
    quality: Quality | None = None
    ops_hours_per_month: float | None = Field(None, ge=0, description="default: the scenario's for self-hosted, 0 for APIs")

    @model_validator(mode="after")
    def _complete(self) -> "Option":
        if self.kind == "api":
            if not self.price:
                raise ValueError("an api option needs price: a line of the price sheet (e.g. openai/gpt-4o-mini)")
            if self.capex_usd is not None or self.usd_per_hour is not None:
                raise ValueError("an api option is priced per token: capex_usd and usd_per_hour belong to self-hosted ones")
            return self
        if self.price:
            raise ValueError("price: names an API price line; a self-hosted option uses usd_per_hour or capex_usd")
        if not self.model:
            raise ValueError("a self-hosted option needs model: the model whose stored bench gives its throughput")
        if self.kind == "rented" and self.usd_per_hour is None:
            raise ValueError("a rented option needs usd_per_hour")
        if self.kind == "owned":
            if (self.capex_usd is None) == (self.usd_per_hour is None):
                raise ValueError("an owned option needs capex_usd with lifetime_months, or an all-in usd_per_hour")
            if self.capex_usd is not None and self.lifetime_months is None:
                raise ValueError("capex_usd needs lifetime_months (the months it is written off over)")
        return self


class Scenario(Strict):
    name: str = "scenario"
    requests_per_day: float | None = Field(None, gt=0)
    requests_per_month: float | None = Field(None, gt=0)
    days_per_month: float = Field(30, gt=0, le=31)
    hours_per_day: float = Field(24, gt=0, le=24, description="hours of operation: the traffic falls in these")
    peak_to_average: float = Field(1, ge=1, description="peak request rate ÷ average rate in the hours of operation")
    tokens: Tokens
    cached_input_share: float = Field(0, ge=0, le=1, description="share of input tokens an API bills as cache hits")
    latency_slo: LatencySLO = Field(default_factory=LatencySLO)
    ops: Ops = Field(default_factory=Ops)
    storage_usd_per_month: float = Field(0, ge=0)
    egress: Egress = Field(default_factory=Egress)
    quality: Quality | None = Field(None, description="default pass-rate source for options that name a model")
    prices: list[PriceLine] = Field(default_factory=list, description="price lines that add to or replace the sheet's")
    options: list[Option] = Field(min_length=1)

    @model_validator(mode="after")
    def _volume(self) -> "Scenario":
        if (self.requests_per_day is None) == (self.requests_per_month is None):
            raise ValueError("give requests_per_day or requests_per_month (one of them)")
        names = [o.name for o in self.options]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"two options are named {dup[0]!r}; option names must be unique")
        return self

    @property
    def monthly_requests(self) -> float:
        return self.requests_per_month if self.requests_per_month is not None else self.requests_per_day * self.days_per_month  # type: ignore[operator]

    @property
    def operating_seconds(self) -> float:
        """Seconds a month in which the traffic arrives."""
        return self.days_per_month * self.hours_per_day * 3600


def load_scenario(path: str | Path) -> Scenario:
    return load_mapping(path, Scenario, expected="expected a mapping with requests_per_day, tokens and options")


PRICES_PATH = "weighbridge/catalog/data/prices.yaml"


@cache
def shipped_prices() -> PriceSheet:
    text = (resources.files("weighbridge.catalog") / "data" / "prices.yaml").read_text(encoding="utf-8")
    src = load_yaml(PRICES_PATH, text)
    try:
        return PriceSheet.model_validate(src.data)
    except ValidationError as e:
        raise validation_error(e, src, PRICES_PATH) from None


def load_prices(path: str | Path | None) -> PriceSheet:
    """The user's sheet when given, else the one shipped with weighbridge."""
    if path is None:
        return shipped_prices()
    return load_mapping(path, PriceSheet, expected="expected a mapping with sheet_date and lines")


def merged_prices(sheet: PriceSheet, scenario: Scenario) -> PriceSheet:
    own = {p.id for p in scenario.prices}
    return PriceSheet(sheet_date=sheet.sheet_date, lines=[*scenario.prices, *(p for p in sheet.lines if p.id not in own)])


__all__ = ["ConfigError", "LatencySLO", "Option", "PriceLine", "PriceSheet", "Scenario", "Tokens", "load_prices",
           "load_scenario", "merged_prices", "shipped_prices"]
