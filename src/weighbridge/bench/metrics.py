"""Serving metrics, each defined here exactly as computed (the report prints these definitions).

Clock: time.perf_counter_ns() on the client. "sent" is taken just before the request is written.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..analysis.stats import percentile

DEFINITIONS = {
    "ttft": "time to first token: request sent → first SSE event carrying generated content (text, reasoning or "
            "tool-call text); role-only and empty chunks do not count",
    "itl": "inter-token latency: gap between consecutive content-bearing chunks, pooled over all requests "
           "(one entry per chunk; a chunk may hold several tokens)",
    "tpot": "time per output token, per request: (E2E − TTFT) / (output tokens − 1), for requests with > 1 token",
    "e2e": "end-to-end latency: request sent → last content-bearing chunk",
    "e2e_intended": "open loop only: intended send time (from the arrival schedule) → last content chunk; shows the "
                    "queueing a closed loop hides (coordinated omission)",
    "rps": "successful requests ÷ wall time of the level (warm-up excluded)",
    "output_tps": "Σ output tokens of successful requests ÷ wall time of the level",
    "goodput": "successful requests meeting every SLO given ÷ wall time of the level",
    "tokens": "from the server's usage (asked for with stream_options) when sent, else the model's tokenizer on "
              "the streamed text (when weighbridge has the GGUF), else one per content chunk",
    "client_cpu": "CPU seconds used by the load generator ÷ wall time (1.0 = one core busy); above 0.9 the "
                  "client, not the server, may be the limit ('client-bound')",
}
PCTS = (50, 90, 95, 99)


@dataclass
class RequestRecord:
    """One request's life, in perf_counter_ns; failures keep their kind and are left out of the figures."""

    intended: int | None
    sent: int
    first_token: int | None = None
    chunk_times: list[int] = field(default_factory=list)
    done: int = 0
    output_tokens: int = 0
    prompt_tokens: int | None = None
    token_source: str = "chunks"
    requested_tokens: int = 0
    error: str | None = None
    text: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None and self.first_token is not None

    @property
    def ttft_ms(self) -> float:
        return (self.first_token - self.sent) / 1e6  # type: ignore[operator]

    @property
    def e2e_ms(self) -> float:
        return ((self.chunk_times[-1] if self.chunk_times else self.done) - self.sent) / 1e6

    @property
    def e2e_intended_ms(self) -> float | None:
        if self.intended is None:
            return None
        return ((self.chunk_times[-1] if self.chunk_times else self.done) - self.intended) / 1e6

    @property
    def tpot_ms(self) -> float | None:
        if self.output_tokens <= 1:
            return None
        return (self.e2e_ms - self.ttft_ms) / (self.output_tokens - 1)

    @property
    def itls_ms(self) -> list[float]:
        return [(b - a) / 1e6 for a, b in zip(self.chunk_times, self.chunk_times[1:])]


@dataclass
class SLO:
    ttft_ms: float | None = None
    tpot_ms: float | None = None
    e2e_ms: float | None = None

    def met(self, r: RequestRecord) -> bool:
        if self.ttft_ms is not None and r.ttft_ms > self.ttft_ms:
            return False
        if self.tpot_ms is not None and (r.tpot_ms or 0.0) > self.tpot_ms:
            return False
        return not (self.e2e_ms is not None and r.e2e_ms > self.e2e_ms)

    @property
    def given(self) -> bool:
        return any(v is not None for v in (self.ttft_ms, self.tpot_ms, self.e2e_ms))


def parse_duration_ms(text: str) -> float:
    """'500ms', '2s' or a bare number of milliseconds → milliseconds (the --slo and scenario syntax)."""
    text = text.strip().lower()
    return float(text[:-2]) if text.endswith("ms") else float(text[:-1]) * 1000 if text.endswith("s") else float(text)


def parse_slo(text: str | None) -> SLO:
    """'ttft=500ms,tpot=50ms,e2e=2s' → SLO; units ms or s."""
    slo = SLO()
    if not text:
        return slo
    for part in text.split(","):
        key, _, value = part.strip().partition("=")
        value = value.strip().lower()
        if key not in ("ttft", "tpot", "e2e") or not value:
            raise ValueError(f"SLO '{part}': use ttft=, tpot= or e2e= with a value like 500ms or 2s")
        setattr(slo, f"{key}_ms", parse_duration_ms(value))
    return slo


def _pcts(values: list[float]) -> dict[str, float | None]:
    return {f"p{p}": percentile(values, p) for p in PCTS} | {"mean": sum(values) / len(values) if values else None}


@dataclass
class LevelResult:
    mode: str  # closed | open
    level: float  # concurrency, or offered requests/s
    wall_s: float
    requests: int
    ok: int
    errors: dict[str, int]
    rps: float
    output_tps: float
    goodput_rps: float | None
    offered_rps: float | None
    ttft_ms: dict[str, float | None]
    itl_ms: dict[str, float | None]
    tpot_ms: dict[str, float | None]
    e2e_ms: dict[str, float | None]
    e2e_intended_ms: dict[str, float | None] | None
    token_sources: list[str]
    short_outputs: int
    client_cpu: float
    client_bound: bool
    cost_per_mtok_usd: float | None = None
    cost_per_request_usd: float | None = None
    contention: dict[str, Any] | None = None  # the machine's load while the level ran (see contention.py)

    @property
    def busy(self) -> str | None:
        from ..core.contention import busy_note

        return busy_note(self.contention)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "busy": self.busy}


def summarise_level(mode: str, level: float, records: list[RequestRecord], wall_s: float, cpu_s: float,
                    slo: SLO, offered_rps: float | None, gpu_hour_usd: float | None) -> LevelResult:
    good = [r for r in records if r.ok]
    errors: dict[str, int] = {}
    for r in records:
        if not r.ok:
            kind = r.error or "no_content"
            errors[kind] = errors.get(kind, 0) + 1
    out_tokens = sum(r.output_tokens for r in good)
    rps = len(good) / wall_s if wall_s else 0.0
    out_tps = out_tokens / wall_s if wall_s else 0.0
    cpu = cpu_s / wall_s if wall_s else 0.0
    cost_mtok = cost_req = None
    if gpu_hour_usd is not None and out_tps > 0:
        cost_mtok = gpu_hour_usd / 3600 / out_tps * 1e6
        cost_req = gpu_hour_usd / 3600 / rps if rps else None
    return LevelResult(
        mode=mode, level=level, wall_s=wall_s, requests=len(records), ok=len(good), errors=errors, rps=rps,
        output_tps=out_tps, goodput_rps=(sum(1 for r in good if slo.met(r)) / wall_s) if slo.given and wall_s else None,
        offered_rps=offered_rps,
        ttft_ms=_pcts([r.ttft_ms for r in good]), itl_ms=_pcts([x for r in good for x in r.itls_ms]),
        tpot_ms=_pcts([t for r in good if (t := r.tpot_ms) is not None]), e2e_ms=_pcts([r.e2e_ms for r in good]),
        e2e_intended_ms=_pcts([x for r in good if (x := r.e2e_intended_ms) is not None]) if mode == "open" else None,
        token_sources=sorted({r.token_source for r in good}),
        short_outputs=sum(1 for r in good if r.requested_tokens and r.output_tokens < r.requested_tokens),
        client_cpu=cpu, client_bound=cpu > 0.9, cost_per_mtok_usd=cost_mtok, cost_per_request_usd=cost_req)
