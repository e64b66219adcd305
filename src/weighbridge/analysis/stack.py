"""The facts of a deployment that decide how it answers - weights, quantisation, chat template,
tokenizer, engine and version, tool parser - read from its run-manifest entry (the server's word
where it is served; the tool parser from how its calls arrived), and the decoding defaults a known
server applies that the same engine in-process does not."""

from __future__ import annotations

from collections import Counter
from typing import Any


def stack_facts(entry: dict[str, Any] | None, calls_from: Counter[str]) -> dict[str, Any]:
    """The facts of a deployment that decide how it answers, from its run-manifest entry (the server's
    word where it is served) and, for the tool parser, from how its calls arrived."""
    e = entry or {}
    if e.get("backend") == "llamacpp":
        from ..backends.quantize import type_name

        gguf = e.get("gguf") or {}
        tok = e.get("tokenizer") or {}
        ftype = gguf.get("general.file_type")
        return {"engine": f"llama.cpp in-process (llama-cpp-python {e.get('llama_cpp_python', '?')})",
                "weights": (e.get("sha256") or "?")[:16],
                "quantisation": (type_name(ftype) if isinstance(ftype, int) else None) or "unknown",
                "chat template": (e.get("chat_template_sha256") or "none")[:16] if e.get("mode") == "chat" else
                "none (completion mode)",
                "tokenizer": _tokenizer_word(tok),
                "tool parser": "weighbridge's (in-process)"}
    if e.get("backend") == "openai":
        info = e.get("server_info") or {}
        fp = e.get("fingerprint") or {}
        version = info.get("version") if isinstance(info, dict) else None
        parser = ("yes (calls arrive as tool_calls)" if calls_from.get("server") and not calls_from.get("text") else
                  "no (calls arrive as text)" if calls_from.get("text") else "not seen (no calls made)")
        template = e.get("chat_template_sha256")  # llama-server says which template it renders; others do not
        return {"engine": f"{e.get('server_kind') or 'unknown server'}" + (f" {version}" if version else ""),
                "weights": (f"the server's {fp.get('source')} fingerprint {str(fp.get('sha256'))[:12]}"
                            if isinstance(fp, dict) and fp.get("sha256") else "unknown (the server does not say)"),
                "quantisation": "unknown (the server does not say)",
                "chat template": str(template)[:16] if template else "the server's own (not exposed)",
                "tokenizer": "the server's own (not exposed)",
                "tool parser": parser}
    return {"engine": str(e.get("backend") or "unknown")}


def _tokenizer_word(tok: dict[str, Any]) -> str:
    if not tok.get("sha256"):
        return "unknown"
    special = tok.get("special") or {}
    ids = ", ".join(f"{k.removesuffix('_token_id')}={v}" for k, v in special.items() if k.endswith("_token_id"))
    return f"{tok.get('model')}/{tok.get('pre')} {tok['sha256'][:12]}" + (f" ({ids})" if ids else "")


_KNOWN_ONLY = ("the server's own", "unknown", "not seen", "the server's ")


def differs(ref: Any, cand: Any) -> bool:
    return ref != cand and not any(str(v).startswith(_KNOWN_ONLY) for v in (ref, cand))


def decoding_hints(entry: dict[str, Any] | None) -> list[str]:
    """What a served candidate's server decodes differently by default, unless its requests set it."""
    from ..backends.servers import KNOWN

    e = entry or {}
    kind = KNOWN.get(str(e.get("server_kind")))
    if kind is None:
        return []
    given = set(e.get("extra_body_keys") or [])
    return [f"{kind.label} applies {name} {there} unless a request sets it (in-process: {here}; {source}): "
            f"set extra_body: {{{name}: {here}}} on the candidate to decode alike"
            for name, there, here, source in kind.decoding_defaults if name not in given]
