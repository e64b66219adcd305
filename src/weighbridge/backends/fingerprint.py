"""What is behind a served model id: a fingerprint of the weights, read where the server tells.

A server's model id is a name, not the model: a llama.cpp server restarted with the same alias on
another GGUF answers to the same id. The response cache and the regression gate must notice, so
each served model's manifest carries a fingerprint taken at preflight, read from what the server
itself exposes (Ollama's model digest, TGI's ``model_sha``, vLLM's ``root`` and ``max_model_len``,
llama.cpp server's model path and size, SGLang's model path). llama-cpp-python's server exposes no
model file at all; there the fingerprint is a probe: the token ids of a fixed text and the greedy
continuation of a fixed prompt, which differ between models (though not always between two
quantisations of one). Hosted APIs expose nothing and answer non-deterministically: they get no
fingerprint, and the manifest says so.

Everything read here is the server's word: kept only as short scalars, never trusted further.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from ..core.hashing import stable_hash

GetJson = Callable[[str], Awaitable[Any]]
PostJson = Callable[[str, dict[str, Any]], Awaitable[Any]]

PROBE_TEXT = "The quick brown fox jumps over the lazy dog. 1234567890 Ωμέγα 東京 <|im_start|>"
PROBE_PROMPT = "Continue the list: apple, banana, cherry,"
PROBE_TOKENS = 12


@dataclass
class Fingerprint:
    """``source`` names where the facts came from; None means none was found, and ``why`` says why."""

    source: str | None
    facts: dict[str, Any] = field(default_factory=dict)
    why: str | None = None

    @property
    def sha256(self) -> str | None:
        return stable_hash(self.facts) if self.source else None

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "facts": self.facts, "sha256": self.sha256, "why": self.why}

    @staticmethod
    def describe(d: dict[str, Any] | None) -> str:
        """One line for a stored fingerprint (a manifest's dict), for reports and the gate."""
        if not isinstance(d, dict) or not d.get("source"):
            why = d.get("why") if isinstance(d, dict) else None
            return f"no fingerprint ({why or 'not recorded'})"
        facts = d.get("facts") if isinstance(d.get("facts"), dict) else {}
        shown = ", ".join(f"{k}={str(v)[:80]}" for k, v in list(facts.items())[:6])
        return f"{d['source']}: {shown}"

    @staticmethod
    def difference(before: dict[str, Any], now: dict[str, Any]) -> str:
        """What differs between two recorded fingerprints, fact by fact ("a: x → y")."""
        if before.get("source") != now.get("source"):
            return f"{Fingerprint.describe(before)} → {Fingerprint.describe(now)}"
        a = before.get("facts") if isinstance(before.get("facts"), dict) else {}
        b = now.get("facts") if isinstance(now.get("facts"), dict) else {}
        diffs = [f"{k} {str(a.get(k, '–'))[:80]} → {str(b.get(k, '–'))[:80]}" for k in sorted({*a, *b})
                 if a.get(k) != b.get(k)]
        return f"{now['source']}: " + "; ".join(diffs[:6])


def _scalar(value: Any) -> Any:
    """A fact worth keeping: a short string, a finite number or a bool; anything else is dropped."""
    if isinstance(value, bool) or (isinstance(value, int) and abs(value) < 10**18):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    if isinstance(value, str) and len(value) <= 500:
        return value
    return None


def _pick(data: Any, keys: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(data, dict):
        return {}
    out = {}
    for k in keys:
        v = _scalar(data.get(k))
        if v is not None:
            out[k] = v
    return out


def _entry(listing: Any, model: str) -> dict[str, Any] | None:
    """The /v1/models entry of ``model`` (Ollama lists ``name:latest``)."""
    data = listing.get("data") if isinstance(listing, dict) else None
    if not isinstance(data, list):
        return None
    for m in data[:1000]:
        if isinstance(m, dict) and m.get("id") in (model, f"{model}:latest"):
            return m
    return None


async def read_fingerprint(kind: str | None, model: str, root: str, base_url: str, listing: Any,
                           get_json: GetJson, post_json: PostJson) -> Fingerprint:
    """The fingerprint of ``model`` on a server of ``kind`` (see ``servers.KNOWN``); never raises for
    what the server answers (a missing or odd answer is "no fingerprint", with the reason)."""
    entry = _entry(listing, model)
    if kind == "vllm":
        facts = _pick(entry, ("root", "max_model_len", "parent"))
        return Fingerprint("vLLM /v1/models", facts) if facts else Fingerprint(None, why="vLLM listed no root for it")
    if kind == "llama.cpp":
        facts = _pick((entry or {}).get("meta"), ("size", "n_params", "n_vocab", "n_ctx_train", "vocab_type"))
        facts.update(_pick(await get_json(root + "/props"), ("model_path",)))
        return (Fingerprint("llama.cpp server /props and /v1/models meta", facts) if facts
                else Fingerprint(None, why="llama-server exposed neither its model path nor its size"))
    if kind == "ollama":
        tags = await get_json(root + "/api/tags")
        models = tags.get("models") if isinstance(tags, dict) else None
        for m in models[:1000] if isinstance(models, list) else []:
            if isinstance(m, dict) and (m.get("name") in (model, f"{model}:latest") or m.get("model") == model):
                facts = _pick(m, ("digest", "size"))
                if facts:
                    return Fingerprint("Ollama /api/tags digest", facts)
        return Fingerprint(None, why=f"Ollama's /api/tags listed no digest for '{model}'")
    if kind == "tgi":
        facts = _pick(await get_json(root + "/info"), ("model_id", "model_sha", "model_dtype"))
        return (Fingerprint("TGI /info", facts) if facts.get("model_sha") or facts.get("model_id")
                else Fingerprint(None, why="TGI's /info gave no model_sha"))
    if kind == "sglang":
        facts = _pick(await get_json(root + "/get_model_info"), ("model_path", "tokenizer_path"))
        return (Fingerprint("SGLang /get_model_info", facts) if facts
                else Fingerprint(None, why="SGLang's /get_model_info gave no model_path"))
    if kind == "llama-cpp-python":
        return await _probe(model, root, base_url, post_json)
    return Fingerprint(None, why="the server exposes no model fingerprint weighbridge can read (hosted APIs do "
                                 "not; a change of weights behind the same model id cannot be detected)")


async def _probe(model: str, root: str, base_url: str, post_json: PostJson) -> Fingerprint:
    """llama-cpp-python's server names no file: ask it to tokenize a fixed text and to continue a fixed
    prompt greedily. Both are deterministic on one server build and differ between models."""
    tokens = await post_json(root + "/extras/tokenize", {"model": model, "input": PROBE_TEXT})
    ids = tokens.get("tokens") if isinstance(tokens, dict) else None
    if not (isinstance(ids, list) and len(ids) <= 10_000 and all(type(t) is int for t in ids)):
        return Fingerprint(None, why="llama-cpp-python's /extras/tokenize did not answer with token ids")
    answer = await post_json(base_url + "/completions", {"model": model, "prompt": PROBE_PROMPT,
                                                         "max_tokens": PROBE_TOKENS, "temperature": 0.0,
                                                         "top_p": 1.0, "seed": 0, "stream": False})
    choices = answer.get("choices") if isinstance(answer, dict) else None
    text = choices[0].get("text") if isinstance(choices, list) and choices and isinstance(choices[0], dict) else None
    if not isinstance(text, str):
        return Fingerprint(None, why="llama-cpp-python did not answer the fingerprint probe with text")
    return Fingerprint("llama-cpp-python probe",
                       {"tokenizer": stable_hash(ids)[:16], "vocab_probe_tokens": len(ids),
                        "greedy": stable_hash(text)[:16]})


def from_manifest(entry: Any) -> dict[str, Any] | None:
    """A model's fingerprint as a run manifest recorded it: a served model's own, or an in-process
    model's GGUF hash (and adapter's) put in the same shape; None when the run recorded neither."""
    if not isinstance(entry, dict):
        return None
    if isinstance(entry.get("fingerprint"), dict):
        return entry["fingerprint"]  # type: ignore[no-any-return]
    if isinstance(entry.get("sha256"), str):
        facts = {"sha256": entry["sha256"]}
        lora = entry.get("lora")
        if isinstance(lora, dict) and isinstance(lora.get("sha256"), str):
            facts["lora_sha256"] = lora["sha256"]
        return Fingerprint("GGUF file sha256", facts).to_dict()
    return None


def changed(before: dict[str, Any] | None, now: dict[str, Any] | None) -> bool | None:
    """True or False when both sides have a fingerprint; None when either lacks one (unknown)."""
    a = before.get("sha256") if isinstance(before, dict) else None
    b = now.get("sha256") if isinstance(now, dict) else None
    return None if not a or not b else a != b
