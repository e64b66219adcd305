"""`bfcl:CATEGORY` from the bfcl-eval package's own data, and the ``tool_call`` scorer's ``rules: bfcl``
held against BFCL's own AST checker (``bfcl_eval.eval_checker.ast_eval.ast_checker``) and its
relevance rule, case by case: on answers constructed from every entry's answer key (the key's own
answer, reordered, with a parameter missing or added, a value changed, retyped or restyled, a wrong
name, a call too many, no call) and on answers the bundled Qwen really gave (tests/data/bfcl-qwen.jsonl:
recorded 2026-12-04 by `weighbridge bakeoff` with Qwen2.5-Coder-0.5B in-process, temperature 0,
max_tokens 256, on slices of the eleven categories).

The reference checker imports BFCL's model table, which imports model SDKs the --no-deps install
leaves out; the test puts a one-entry table in its place (a model that, like every OpenAI-style
function-calling model, gets dots in function names as underscores) - the checker's code is BFCL's own.
"""

from __future__ import annotations

import ast
import asyncio
import copy
import json
import sys
import types
from importlib import resources
from pathlib import Path

import pytest

from weighbridge.backends.toolcalls import make_call
from weighbridge.core.types import Generation
from weighbridge.scorers import build_scorer
from weighbridge.suites import load_suite
from weighbridge.suites.bfcl import AST_CATEGORIES

RECORDED = Path(__file__).parent / "data" / "bfcl-qwen.jsonl"


@pytest.fixture(scope="module")
def reference():
    stub = types.ModuleType("bfcl_eval.constants.model_config")
    stub.MODEL_CONFIG_MAPPING = {"weighbridge": types.SimpleNamespace(underscore_to_dot=True)}
    saved = sys.modules.get(stub.__name__)
    sys.modules[stub.__name__] = stub
    try:
        from bfcl_eval.constants.enums import Language
        from bfcl_eval.eval_checker.ast_eval.ast_checker import ast_checker
    finally:
        if saved is None:
            sys.modules.pop(stub.__name__, None)
    # the relevance rule's two helpers, taken from bfcl_eval/utils.py's source (that module imports filelock)
    source = (resources.files("bfcl_eval") / "utils.py").read_text(encoding="utf-8")
    wanted = [n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef)
              and n.name in ("is_function_calling_format_output", "is_empty_output")]
    helpers: dict = {}
    exec(compile(ast.Module(body=wanted, type_ignores=[]), "bfcl_eval/utils.py", "exec"), helpers)

    def verdict(category, functions, decoded, answers):
        if "relevance" in category:
            contains = decoded is not None and not helpers["is_empty_output"](decoded)
            return not contains if "irrelevance" in category else contains
        if decoded is None or not helpers["is_function_calling_format_output"](decoded):
            return False
        return ast_checker(copy.deepcopy(functions), copy.deepcopy(decoded), copy.deepcopy(answers), Language.PYTHON,
                           category, "weighbridge")["valid"]
    return verdict


def _name(call_key: str) -> str:
    return call_key.replace(".", "_")


def _first(allowed):
    return next((a for a in allowed if a != ""), None)


def _restyle(value):
    return value.upper().replace(" ", "-") if isinstance(value, str) else value


def constructed(answers: list[dict], functions: list[dict]) -> list[tuple[str, list[dict] | None]]:
    """(label, calls) built from the answer key: calls are {name: arguments}; None is an answer with no call."""
    gold = []
    for answer in answers:
        key, allowed = next(iter(answer.items()))
        gold.append({_name(key): {p: _first(v) for p, v in allowed.items() if _first(v) is not None}})
    out = [("gold", gold), ("reordered", gold[::-1]), ("no call", None), ("a call too many", gold + gold[:1])]
    if not gold:
        fn = _name(functions[0]["name"]) if functions else "some_function"
        return out + [("a call", [{fn: {}}]), ("a call with arguments", [{fn: {"x": 1}}])]
    (name, params), = gold[0].items()
    first = dict(params)
    out.append(("wrong name", [{name + "_x": first}, *gold[1:]]))
    out.append(("extra parameter", [{name: {**first, "zz_extra": 1}}, *gold[1:]]))
    if first:
        p0 = next(iter(first))
        out.append(("missing parameter", [{name: {k: v for k, v in first.items() if k != p0}}, *gold[1:]]))
        for p, v in first.items():
            if isinstance(v, str):
                out.append(("restyled string", [{name: {**first, p: _restyle(v)}}, *gold[1:]]))
                out.append(("string as a number", [{name: {**first, p: 5}}, *gold[1:]]))
                break
        for p, v in first.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                out.append(("number changed", [{name: {**first, p: v + 1}}, *gold[1:]]))
                out.append(("float as int" if isinstance(v, float) else "int as float",
                            [{name: {**first, p: int(v) if isinstance(v, float) else float(v)}}, *gold[1:]]))
                out.append(("number as a string", [{name: {**first, p: str(v)}}, *gold[1:]]))
                break
        for p, v in first.items():
            if isinstance(v, list) and v:
                out.append(("list shortened", [{name: {**first, p: v[:-1]}}, *gold[1:]]))
                break
    key, allowed = next(iter(answers[0].items()))
    second = {p: next((a for a in v if a != "" and a != _first(v)), _first(v)) for p, v in allowed.items()}
    out.append(("other allowed values", [{_name(key): {p: v for p, v in second.items() if v is not None}}, *gold[1:]]))
    return out


def ours(case, calls) -> bool:
    scorer = build_scorer(case.scorers[0])
    made = None if calls is None else [make_call(f"c{i}", name, json.dumps(args)) for i, c in enumerate(calls)
                                       for name, args in c.items()]
    gen = Generation.answer_only("", made)
    return asyncio.run(scorer.evaluate(case, gen, None)).passed


def test_the_bfcl_categories_load_from_the_packages_data_with_bfcls_tool_conversion():
    suite = load_suite("bfcl:simple_python[:3]")
    case = suite.cases[0]
    assert case.id == "simple_python_0" and case.tools and case.scorers[0]["rules"] == "bfcl"
    tool = load_suite("bfcl:parallel[:1]").cases[0].tools[0].function
    assert tool["parameters"]["type"] == "object" and "." not in tool["name"]
    floats = [(n, p) for c in load_suite("bfcl:simple_python").cases for t in c.tools
              for n, p in t.function["parameters"]["properties"].items() if p.get("format") == "float"]
    assert floats and all(p["type"] == "number" and p["description"].endswith("This is a float type value.")
                          for _, p in floats)


@pytest.mark.slow
def test_verdicts_agree_with_bfcls_own_checker_case_by_case(reference):
    disagree, checked, passed = [], 0, 0
    for category in AST_CATEGORIES:
        for case in load_suite(f"bfcl:{category}").cases:
            functions = case.scorers[0]["functions"]
            for label, calls in constructed(case.expected or [], functions):
                mine, theirs = ours(case, calls), reference(category, functions, calls, case.expected or [])
                checked += 1
                passed += mine
                if mine != theirs:
                    disagree.append((case.id, label, mine, theirs, calls))
    print(f"{checked} constructed answers, {passed} passed")
    assert disagree[:5] == [] and checked > 20_000 and 0.1 < passed / checked < 0.6


def test_verdicts_agree_on_the_answers_qwen_gave(reference):
    records = [json.loads(line) for line in RECORDED.read_text(encoding="utf-8").splitlines()]
    suites = {}
    disagree = []
    for rec in records:
        if rec["category"] not in suites:
            suites[rec["category"]] = {c.id: c for c in load_suite(f"bfcl:{rec['category']}").cases}
        cases = suites[rec["category"]]
        case = cases[rec["case_id"]]
        calls = [make_call(f"c{i}", c["name"], c["raw"]) for i, c in enumerate(rec["tool_calls"])]
        decoded = None if not calls or any(c["arguments"] is None for c in calls) else [
            {c["name"]: c["arguments"]} for c in calls]
        scorer = build_scorer(case.scorers[0])
        mine = asyncio.run(scorer.evaluate(case, Generation.answer_only(rec["text"], calls or None), None)).passed
        theirs = reference(rec["category"], case.scorers[0]["functions"], decoded, case.expected or [])
        if mine != theirs:
            disagree.append((case.id, mine, theirs))
    assert len(records) >= 100 and disagree == []
