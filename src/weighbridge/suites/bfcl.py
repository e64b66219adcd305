"""``bfcl:CATEGORY``: the Berkeley Function-Calling Leaderboard's cases from the ``bfcl-eval``
package's own data (``pip install --no-deps bfcl-eval==2026.3.23``: its data and checkers, without
the model SDKs it would pull in; nothing is downloaded at run time).

    bfcl:simple_python   bfcl:multiple   bfcl:parallel   bfcl:parallel_multiple   bfcl:irrelevance
    bfcl:live_simple     bfcl:live_multiple     bfcl:live_parallel     bfcl:live_parallel_multiple
    bfcl:live_irrelevance     bfcl:live_relevance           (each takes a slice: bfcl:parallel[:50])

Each case offers the entry's functions as OpenAI tools, converted as BFCL converts them for
function-calling models (its types mapped to JSON-schema types, dots in names as underscores, a
float parameter described as one), asks the entry's question, and is scored by the ``tool_call``
scorer with ``rules: bfcl`` against the entry's possible answers (``scorers/bfcl_rules.py``).
"""

from __future__ import annotations

import ast
import json
from importlib import resources
from typing import Any

from ..core.errors import ConfigError

PREFIX = "bfcl:"
AST_CATEGORIES = ("simple_python", "multiple", "parallel", "parallel_multiple", "irrelevance", "live_simple",
                  "live_multiple", "live_parallel", "live_parallel_multiple", "live_irrelevance", "live_relevance")
MULTI_TURN_CATEGORIES = ("multi_turn_base", "multi_turn_long_context", "multi_turn_miss_param", "multi_turn_miss_func")
# what BFCL says to a function-calling model at the turn a held-back function arrives (its FC prompt)
ADDED_FUNCTIONS = "I have updated some more functions you can choose from. What about now?"
_OPENAPI = {"integer": "integer", "number": "number", "float": "number", "string": "string", "boolean": "boolean",
            "bool": "boolean", "array": "array", "list": "array", "dict": "object", "object": "object",
            "tuple": "array", "any": "string"}
_NOT_SCHEMA = {"type", "properties", "items", "required", "optional"}


def _data(name: str) -> Any:
    try:
        return resources.files("bfcl_eval") / "data" / name
    except ModuleNotFoundError:
        raise ConfigError("bfcl: needs the bfcl-eval package's data: pip install --no-deps bfcl-eval==2026.3.23 "
                          "(the README's install)", field="suites") from None


def _lines(path: Any) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def to_schema(doc: dict[str, Any], *, note_float: bool = True) -> dict[str, Any]:
    """One BFCL parameter document as JSON schema: its type mapped (unknown types: string), a float
    described as one (BFCL adds the same words), nested properties and items converted too."""
    out = {k: v for k, v in doc.items() if k not in _NOT_SCHEMA}
    kind = doc.get("type")
    out["type"] = _OPENAPI.get(kind, "string") if isinstance(kind, str) else "string"
    if kind == "float" and note_float:
        out["format"] = "float"
        out["description"] = str(doc.get("description", "")) + " This is a float type value."
    if isinstance(doc.get("properties"), dict):
        out["properties"] = {k: to_schema(v) for k, v in doc["properties"].items() if isinstance(v, dict)}
    if isinstance(doc.get("required"), list):
        out["required"] = doc["required"]
    if isinstance(doc.get("items"), dict):
        out["items"] = to_schema(doc["items"], note_float=False)
    return out


def to_tool(function: dict[str, Any]) -> dict[str, Any]:
    params = function.get("parameters") or {}
    schema = to_schema({**params, "type": "dict"})
    return {"type": "function", "function": {"name": str(function["name"]).replace(".", "_"),
                                             "description": str(function.get("description", "")),
                                             "parameters": schema}}


def cases(category: str) -> list[dict[str, Any]]:
    if category in MULTI_TURN_CATEGORIES:
        return multi_turn_cases(category)
    if category not in AST_CATEGORIES:
        raise ConfigError(f"no BFCL category '{category}' (available: "
                          f"{', '.join(AST_CATEGORIES + MULTI_TURN_CATEGORIES)})", field="suites")
    entries = _lines(_data(f"BFCL_v4_{category}.json"))
    answers: dict[str, Any] = {}
    if "relevance" not in category:  # irrelevance and relevance entries have no answer key
        answers = {a["id"]: a["ground_truth"] for a in _lines(_data(f"possible_answer/BFCL_v4_{category}.json"))}
    out = []
    for e in entries:
        out.append({"id": e["id"], "messages": e["question"][0], "tools": [to_tool(f) for f in e["function"]],
                    "expected": answers.get(e["id"], []), "tags": ["tools", f"bfcl-{category}"],
                    "workload": f"bfcl-{category}",
                    "scorers": [{"type": "tool_call", "rules": "bfcl", "category": category,
                                 "functions": e["function"]}]})
    return out


def gold_call(text: str, functions: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One of BFCL's ground-truth calls (``mv(source='a', destination='b')``, positional arguments
    too) as ``{name, arguments}``: parsed as a Python expression, its arguments as literals, never run."""
    node = ast.parse(text.strip(), mode="eval").body
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
        raise ValueError(f"not a function call: {text!r}")
    name = node.func.id
    order = list(((functions.get(name) or {}).get("parameters") or {}).get("properties") or {})
    if len(node.args) > len(order):
        raise ValueError(f"{text!r}: more positional arguments than {name} has parameters")
    arguments = {order[i]: ast.literal_eval(a) for i, a in enumerate(node.args)}
    arguments.update({k.arg: ast.literal_eval(k.value) for k in node.keywords if k.arg is not None})
    return {"name": name, "arguments": arguments}


def multi_turn_cases(category: str) -> list[dict[str, Any]]:
    """One agent case per entry: BFCL's environments in the sandbox (``builtin:bfcl``), the entry's
    turns, its ground truth as the gold calls, limits as BFCL runs them (20 steps a turn; a reply cut
    at max_tokens ends its turn), scored by the ``agent`` scorer's ``rules: bfcl``."""
    from bfcl_eval.constants.executable_backend_config import MULTI_TURN_FUNC_DOC_FILE_MAPPING as DOCS

    entries = _lines(_data(f"BFCL_v4_{category}.json"))
    answers = {a["id"]: a["ground_truth"] for a in _lines(_data(f"possible_answer/BFCL_v4_{category}.json"))}
    docs: dict[str, list[dict[str, Any]]] = {}
    out = []
    for e in entries:
        functions = []
        for cls in e["involved_classes"]:
            if cls not in docs:
                docs[cls] = _lines(_data(f"multi_turn_func_doc/{DOCS[cls]}"))
            functions += docs[cls]  # all of them: BFCL's runner does not apply an entry's excluded_function
        by_name = {f["name"]: f for f in functions}
        held = {int(t): list(names) for t, names in (e.get("missed_function") or {}).items()}
        turns = ["\n".join(str(m["content"]) for m in turn if m.get("role") == "user") or
                 (ADDED_FUNCTIONS if i in held else "") for i, turn in enumerate(e["question"])]
        out.append({"id": e["id"], "environment": "builtin:bfcl", "turns": turns, "workload": f"bfcl-{category}",
                    "tags": ["agent", f"bfcl-{category}"],
                    "initial_state": {"involved_classes": e["involved_classes"], "initial_config": e["initial_config"],
                                      "long_context": "long_context" in category,
                                      "tools": [to_tool(f) for f in functions]},
                    "gold": [[gold_call(c, by_name) for c in turn] for turn in answers[e["id"]]],
                    "held_back": held,
                    "limits": {"steps_per_turn": 20, "steps_per_episode": 20 * len(turns), "tool_errors": 1000,
                               "tokens": 10_000_000, "wall_s": 3600, "cut_off_ends_episode": False},
                    "scorers": [{"type": "agent", "rules": "bfcl"}]})
    return out
