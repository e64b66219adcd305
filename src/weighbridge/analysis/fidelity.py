"""Deployment fidelity: does a candidate deployment of a model answer like its reference, case by case?

Pass rates can hide it: a requantised file or another server can keep the same pass rate while
answering differently, lose tool calls to a server without a tool parser, or run another chat
template. So each candidate is held against the reference on the same (case, sample) items, answer
by answer (the definitions sit beside the code, as ``DEFINITIONS`` below):

- **answer agreement**: exact (the text and the calls as given) and normalised (reasoning dropped,
  Unicode NFKC, case folded, whitespace collapsed, arguments compared as canonical JSON);
- **tool calls**: F1 of the candidate's calls against the reference's (name and arguments; names
  alone), calls whose arguments validate against the offered tool's schema, answers where the
  reference called and the candidate did not (lost) or the other way round (invented), and calls
  that arrived as text because the server parsed none;
- **structured output**: answers to schema-checked cases that parse and validate;
- **drift**: finish reasons that differ, completion tokens against the reference's;
- **the stack**: weights, quantisation, chat template, tokenizer, engine, server kind and version.

The verdict per candidate follows ``RULES``: **broken** when a client's integration would fail
(calls as text, calls lost in most answers, errors, structured output lost), **drifts** (and where)
when an agreement or drift figure passes its threshold or the chat template or tokenizer differs,
**faithful** otherwise. Thresholds are stated with every result; they are settings, not findings.
"""

from __future__ import annotations

import json
import unicodedata
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from ..backends.toolcalls import tool_validators
from ..scorers.base import final_answer
from ..scorers.schema import schema_valid
from .stack import decoding_hints, differs, stack_facts

if TYPE_CHECKING:
    from ..core.types import Generation, ToolCall
    from ..storage.store import StoredGeneration
    from .summary import RunSummary


@dataclass(frozen=True)
class Thresholds:
    """Where drift starts; the defaults ask a deployment at temperature 0 to answer nearly alike."""

    agreement: float = 0.95  # normalised answer agreement at or above this is not drift
    tool_f1: float = 0.95
    finish_drift: float = 0.05  # share of items whose finish reason differs
    token_drift: float = 0.10  # |Σ candidate tokens ÷ Σ reference tokens − 1|
    broken_share: float = 0.5  # calls lost / structured output lost in more than this share: broken
    max_error_rate: float = 0.2

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


DEFINITIONS = {
    "exact": "items whose text and tool calls are identical to the reference's",
    "normalised": "items equal after dropping reasoning, NFKC, case folding, collapsing whitespace, and comparing "
                  "call arguments as canonical JSON",
    "tool_f1": "F1 of the candidate's calls (name and canonical arguments) against the reference's, over items "
               "offering tools; name F1 compares names only",
    "schema_valid_calls": "calls whose arguments validate against the offered tool's parameters schema",
    "lost / invented": "items where the reference called a tool and the candidate did not / the other way round",
    "calls_as_text": "answers whose calls the server sent as text (no tool parser), recovered by weighbridge",
    "finish_drift": "items whose finish reason differs from the reference's",
    "token_drift": "Σ completion tokens of the candidate ÷ the reference's − 1, over items both counted",
}

RULES = ("broken: tool calls arrived as text, or the candidate lost the reference's calls / schema-valid JSON in "
         "more than {broken_share:.0%} of the items, or errored on more than {max_error_rate:.0%} of the items the "
         "reference answered; drifts: normalised agreement < {agreement:.0%}, tool-call F1 < {tool_f1:.0%}, finish "
         "reasons differ in > {finish_drift:.0%} of items, tokens drift by > {token_drift:.0%}, or another chat "
         "template or tokenizer; faithful: neither.")

_SHOWN = 20  # disagreeing items listed per candidate (all are in the JSON)


@dataclass
class Fidelity:
    """One candidate against the reference, over the items both were asked."""

    candidate: str
    reference: str
    items: int = 0  # (case, sample) items both were asked
    answered: int = 0  # both answered
    candidate_errors: int = 0  # the reference answered, the candidate errored
    exact: int = 0
    normalised: int = 0
    disagreeing: list[str] = field(default_factory=list)  # items whose normalised answers differ
    tool_items: int = 0
    tool_f1: float | None = None
    name_f1: float | None = None
    candidate_calls: int = 0
    reference_calls: int = 0
    schema_valid_calls: int = 0
    reference_schema_valid_calls: int = 0
    calls_lost: int = 0
    calls_invented: int = 0
    reference_calling_items: int = 0
    calls_as_text: int = 0
    reference_calls_as_text: int = 0
    json_checked: int = 0
    json_valid: int = 0
    reference_json_valid: int = 0
    finish_differs: list[dict[str, Any]] = field(default_factory=list)
    tokens_compared: int = 0
    token_drift: float | None = None
    stack: dict[str, dict[str, Any]] = field(default_factory=dict)  # fact -> {reference, candidate}
    temperature: float = 0.0
    verdict: str = "faithful"
    reasons: list[str] = field(default_factory=list)
    hints: list[str] = field(default_factory=list)  # known causes of what drifted, and the setting that removes them

    @property
    def agreement(self) -> float | None:
        return self.normalised / self.answered if self.answered else None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["agreement"] = self.agreement
        return d


@dataclass
class FidelityGroup:
    name: str
    reference: str
    thresholds: Thresholds
    rows: list[Fidelity]
    notes: list[str] = field(default_factory=list)

    @property
    def broken(self) -> list[Fidelity]:
        return [r for r in self.rows if r.verdict == "broken"]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "reference": self.reference, "thresholds": self.thresholds.to_dict(),
                "rule": RULES.format(**self.thresholds.to_dict()), "definitions": DEFINITIONS, "notes": self.notes,
                "candidates": [r.to_dict() for r in self.rows]}


# -- answers, normalised ---------------------------------------------------------------------------
def _norm_text(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", final_answer(text)).casefold().split())


def _call_key(call: "ToolCall") -> str:
    args = call["arguments"]
    body = json.dumps(args, sort_keys=True, ensure_ascii=False) if args is not None else f"<unparsed {call['raw']!r}>"
    return f"{call['name']}({body})"


def _calls(g: "Generation") -> list["ToolCall"]:
    return list(g.tool_calls or [])


def _exact(a: "Generation", b: "Generation") -> bool:
    return a.text == b.text and [(c["name"], c["raw"]) for c in _calls(a)] == [(c["name"], c["raw"]) for c in _calls(b)]


def _normalised(a: "Generation", b: "Generation") -> bool:
    return _norm_text(a.text) == _norm_text(b.text) and \
        Counter(_call_key(c) for c in _calls(a)) == Counter(_call_key(c) for c in _calls(b))


def _f1(tp: int, predicted: int, gold: int) -> float | None:
    if predicted == 0 and gold == 0:
        return None
    return 2 * tp / (predicted + gold)


def _schema_ok(call: "ToolCall", validators: dict[str, Any]) -> bool:
    """Do the call's arguments validate against the offered tool's schema (an unknown tool: no)?"""
    validator = validators.get(call["name"])
    if validator is None or call["arguments"] is None:
        return False
    try:
        return not any(True for _ in validator.iter_errors(call["arguments"]))
    except RecursionError:
        return False


def _validators_of(case: dict[str, Any]) -> dict[str, Any] | None:
    """The case's offered tools as validators, once per case; None for a case that offers none."""
    tools = (case.get("case") or {}).get("tools")
    if not tools:
        return None
    return tool_validators([t for t in tools if isinstance(t, dict) and isinstance(t.get("function"), dict)])


def _json_valid(row: "StoredGeneration") -> bool | None:
    checks = [s.reason for kind, s in row.scores or [] if kind == "json_schema"]
    return schema_valid(checks[0]) if checks else None


# -- one candidate -------------------------------------------------------------------------------
def compare_deployments(summary: "RunSummary", reference: str, candidate: str,
                        thresholds: Thresholds | None = None) -> Fidelity:
    th = thresholds or Thresholds()
    tools_by_case = {c["id"]: _validators_of(c) for c in summary.cases}
    ref_rows = {r.key: r for r in summary.rows if r.model == reference}
    cand_rows = {r.key: r for r in summary.rows if r.model == candidate}
    f = Fidelity(candidate=candidate, reference=reference)
    tp = tp_names = ref_tokens = cand_tokens = 0
    for key in sorted(set(ref_rows) & set(cand_rows)):
        a, b = ref_rows[key], cand_rows[key]
        if a.generation is not None and a.generation.raw.get("agent"):
            continue  # an agent episode is judged by its end state, not answer by answer
        f.items += 1
        ga, gb = a.generation, b.generation
        if ga is None:
            continue
        if gb is None:
            f.candidate_errors += 1
            continue
        f.answered += 1
        f.exact += _exact(ga, gb)
        if _normalised(ga, gb):
            f.normalised += 1
        else:
            f.disagreeing.append(key)
        if ga.finish_reason != gb.finish_reason:
            f.finish_differs.append({"item": key, "reference": ga.finish_reason, "candidate": gb.finish_reason})
        if ga.completion_tokens is not None and gb.completion_tokens is not None:
            f.tokens_compared += 1
            ref_tokens += ga.completion_tokens
            cand_tokens += gb.completion_tokens
        tools = tools_by_case.get(a.case_id)
        if tools is not None:
            f.tool_items += 1
            ca, cb = _calls(ga), _calls(gb)
            f.reference_calls += len(ca)
            f.candidate_calls += len(cb)
            tp += sum((Counter(_call_key(c) for c in ca) & Counter(_call_key(c) for c in cb)).values())
            tp_names += sum((Counter(c["name"] for c in ca) & Counter(c["name"] for c in cb)).values())
            f.schema_valid_calls += sum(_schema_ok(c, tools) for c in cb)
            f.reference_schema_valid_calls += sum(_schema_ok(c, tools) for c in ca)
            f.reference_calling_items += bool(ca)
            f.calls_lost += bool(ca) and not cb
            f.calls_invented += bool(cb) and not ca
            f.calls_as_text += gb.raw.get("tool_calls_from") == "text"
            f.reference_calls_as_text += ga.raw.get("tool_calls_from") == "text"
        va, vb = _json_valid(a), _json_valid(b)
        if va is not None and vb is not None:
            f.json_checked += 1
            f.reference_json_valid += va
            f.json_valid += vb
    if f.tool_items:
        f.tool_f1 = _f1(tp, f.candidate_calls, f.reference_calls)
        f.name_f1 = _f1(tp_names, f.candidate_calls, f.reference_calls)
    if ref_tokens:  # over the items both answered and counted, agent episodes left out as everywhere above
        f.token_drift = cand_tokens / ref_tokens - 1
    models = summary.run["manifest"].get("models") or {}
    ref_from = Counter(str(r.generation.raw.get("tool_calls_from")) for r in ref_rows.values() if r.generation)
    cand_from = Counter(str(r.generation.raw.get("tool_calls_from")) for r in cand_rows.values() if r.generation)
    ref_stack, cand_stack = stack_facts(models.get(reference), ref_from), stack_facts(models.get(candidate), cand_from)
    f.stack = {k: {"reference": ref_stack.get(k), "candidate": cand_stack.get(k)} for k in {**ref_stack, **cand_stack}}
    temps = [float((m.get("params") or {}).get("temperature") or 0.0) for m in
             (models.get(reference) or {}, models.get(candidate) or {})]
    f.temperature = max(temps)
    f.verdict, f.reasons = judge(f, th)
    if f.verdict != "faithful":
        f.hints = decoding_hints(models.get(candidate))
    return f


def judge(f: Fidelity, th: Thresholds) -> tuple[str, list[str]]:
    """The verdict and every reason for it, by ``RULES``."""
    broken, drifts = [], []
    if f.calls_as_text > f.reference_calls_as_text:
        broken.append(f"tool calls arrive as text in {f.calls_as_text} answer(s): the server has no tool parser, so "
                      "a client reading message.tool_calls gets none")
    if f.reference_calling_items and f.calls_lost > th.broken_share * f.reference_calling_items:
        broken.append(f"calls lost: the reference called tools in {f.reference_calling_items} item(s), the candidate "
                      f"made no call in {f.calls_lost} of them")
    asked = f.answered + f.candidate_errors
    if asked and f.candidate_errors > th.max_error_rate * asked:
        broken.append(f"errors: {f.candidate_errors} of {asked} items the reference answered")
    if f.json_checked and f.reference_json_valid - f.json_valid > th.broken_share * f.json_checked:
        broken.append(f"structured output lost: {f.json_valid}/{f.json_checked} schema-valid against the reference's "
                      f"{f.reference_json_valid}/{f.json_checked}")
    if f.agreement is not None and f.agreement < th.agreement:
        drifts.append(f"answers: {f.normalised}/{f.answered} agree ({f.agreement:.0%} < {th.agreement:.0%})")
    if f.tool_f1 is not None and f.tool_f1 < th.tool_f1:
        drifts.append(f"tool calls: F1 {f.tool_f1:.2f} (names {f.name_f1:.2f}), {f.calls_lost} lost, "
                      f"{f.calls_invented} invented")
    if f.answered and len(f.finish_differs) > th.finish_drift * f.answered:
        drifts.append(f"finish reasons differ in {len(f.finish_differs)} of {f.answered} items")
    if f.token_drift is not None and abs(f.token_drift) > th.token_drift:
        drifts.append(f"completion tokens {f.token_drift:+.0%} against the reference")
    for fact in ("chat template", "tokenizer"):
        pair = f.stack.get(fact) or {}
        if differs(pair.get("reference"), pair.get("candidate")):
            drifts.append(f"another {fact}: {pair.get('candidate')} (reference {pair.get('reference')})")
    if not f.answered:
        return "broken", broken or ["no item was answered by both"]
    if broken:
        return "broken", broken + drifts
    if drifts:
        return "drifts", drifts
    return "faithful", []


def fidelity_groups(summary: "RunSummary", thresholds: Thresholds | None = None) -> list[FidelityGroup]:
    """One group per config entry with variants: every variant against the reference variant."""
    th = thresholds or Thresholds(max_error_rate=summary.max_error_rate)
    groups = []
    for g in summary.variants:
        ref = next(r.model for r in g.rows if r.reference)
        rows = [compare_deployments(summary, ref, r.model, th) for r in g.rows if not r.reference]
        group = FidelityGroup(name=g.name, reference=ref, thresholds=th, rows=rows)
        if any(r.temperature > 0 for r in rows):
            group.notes.append("sampled at temperature > 0: disagreement includes sampling noise, not only the "
                               "deployment (verify at temperature 0)")
        groups.append(group)
    return groups


def shown_items(f: Fidelity) -> str:
    """The disagreeing items, the first few by name."""
    more = len(f.disagreeing) - _SHOWN
    return ", ".join(f.disagreeing[:_SHOWN]) + (f" … and {more} more" if more > 0 else "")


def _ratio(n: int, d: int) -> str:
    return f"{n / d:.0%} ({n}/{d})" if d else "–"


def fidelity_rows(g: FidelityGroup) -> list[tuple[str, list[str]]]:
    """The figures of a group as table rows (label, one plain-text cell per candidate), for every renderer."""
    rows = [
        ("items (both asked)", [str(r.items) for r in g.rows]),
        ("answers agree, exact", [_ratio(r.exact, r.answered) for r in g.rows]),
        ("answers agree, normalised", [_ratio(r.normalised, r.answered) for r in g.rows]),
    ]
    if any(r.tool_items for r in g.rows):
        rows += [
            ("tool-call F1 (names)", [f"{r.tool_f1:.2f} ({r.name_f1:.2f})" if r.tool_f1 is not None and
                                      r.name_f1 is not None else "–" for r in g.rows]),
            ("schema-valid calls", [f"{_ratio(r.schema_valid_calls, r.candidate_calls)} vs "
                                    f"{_ratio(r.reference_schema_valid_calls, r.reference_calls)}" for r in g.rows]),
            ("calls lost / invented", [f"{r.calls_lost} / {r.calls_invented}" for r in g.rows]),
            ("calls as text", [str(r.calls_as_text) for r in g.rows]),
        ]
    if any(r.json_checked for r in g.rows):
        rows.append(("schema-valid JSON", [f"{_ratio(r.json_valid, r.json_checked)} vs {r.reference_json_valid}"
                                           for r in g.rows]))
    rows += [
        ("finish reason differs", [str(len(r.finish_differs)) for r in g.rows]),
        ("completion tokens Δ", [f"{r.token_drift:+.1%}" if r.token_drift is not None else "–" for r in g.rows]),
        ("candidate errors", [str(r.candidate_errors) for r in g.rows]),
        ("verdict", [r.verdict for r in g.rows]),
    ]
    return rows


def stack_lines(f: Fidelity) -> list[str]:
    """The stack facts that differ from the reference's, one line each (the same ones on every renderer)."""
    return [f"{fact}: {pair['candidate']} (reference: {pair['reference']})"
            for fact, pair in sorted(f.stack.items()) if pair["candidate"] != pair["reference"]]
