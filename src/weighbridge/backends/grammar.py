"""Constrained decoding for in-process llama.cpp: a JSON schema (or any JSON) as a grammar that
llama.cpp has parsed before it reaches the sampler.
"""

from __future__ import annotations

import json
from typing import Any

from ..core.errors import BackendError
from .llama_runtime import quiet_stderr


def grammar_parses(llm: Any, text: str) -> bool:
    """Whether llama.cpp accepts a grammar: it answers a parse error with a NULL sampler (and a line
    on stderr), which, passed on, would crash the sampler chain."""
    import llama_cpp

    with quiet_stderr(True):
        sampler = llama_cpp.llama_sampler_init_grammar(llm._model.vocab, text.encode("utf-8"), b"root")
    if not sampler:
        return False
    llama_cpp.llama_sampler_free(sampler)
    return True


def loosened(schema: Any, names: bool = False) -> Any:
    """The schema without the keywords the grammar converter mishandles (regex patterns, formats);
    the keys of ``properties`` are property names, kept whatever they are called."""
    if isinstance(schema, dict):
        if names:
            return {k: loosened(v) for k, v in schema.items()}
        return {k: loosened(v, names=k in ("properties", "$defs", "definitions")) for k, v in schema.items()
                if k not in ("pattern", "format", "patternProperties")}
    if isinstance(schema, list):
        return [loosened(v) for v in schema]
    return schema


def json_grammar(llm: Any, schema: dict[str, Any] | None, model: str) -> tuple[Any, str | None]:
    """A grammar llama.cpp has parsed, for a JSON schema (or any JSON when None), and a note when the
    schema had to be loosened. llama-cpp-python's converter writes some schemas (a ``pattern`` with
    ``\\d``, say) into grammar text llama.cpp cannot parse, and a grammar that fails to parse crashes
    the process at sampling time; so each one is parsed once here first. Parts the grammar cannot
    express are left to the scorer, which validates the full schema afterwards."""
    from llama_cpp import LlamaGrammar
    from llama_cpp.llama_grammar import JSON_GBNF, json_schema_to_gbnf

    attempts: list[tuple[str | None, Any]] = [(None, schema)]
    if schema is not None:
        attempts.append(("pattern and format left to the scorer: llama.cpp's grammar cannot express them",
                         loosened(schema)))
    for note, candidate in attempts:
        try:
            text = JSON_GBNF if candidate is None else json_schema_to_gbnf(json.dumps(candidate))
        except Exception:  # noqa: BLE001 - the converter raises bare errors for schemas it does not know
            continue
        if grammar_parses(llm, text):
            return LlamaGrammar.from_string(text, verbose=False), note
    raise BackendError(f"model '{model}': the reply's JSON schema cannot be turned into a llama.cpp grammar; "
                       "set structured_output: off (or json_object) for this model", kind="grammar")
