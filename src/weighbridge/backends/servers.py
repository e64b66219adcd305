"""Which OpenAI-compatible server is this, and what does that mean for how we talk to it?

Best effort, from what the servers themselves expose: the ``owned_by`` of their ``/v1/models``
entries and their own version or info endpoints. What is recognised lands in the run manifest; the
one server with a behaviour that breaks a default gets a safer default here (see ``KNOWN``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ServerKind:
    name: str
    label: str
    safe_concurrency: int | None = None  # used when the config sets none
    note: str = ""
    # what its defaults decode differently from the same engine in-process: (request field, its default
    # there, the in-process value, where that default is set); a fidelity check says so when answers drift
    decoding_defaults: tuple[tuple[str, float, float, str], ...] = ()
    batches: bool = False  # serves many requests at once (continuous batching): concurrency auto by default


KNOWN = {
    "llama-cpp-python": ServerKind(
        "llama-cpp-python", "llama-cpp-python's server (python -m llama_cpp.server)", 1,
        "if it was started without --interrupt_requests False, it cuts off a running request when the next one "
        "arrives, so weighbridge sends it one request at a time (set concurrency: on the model to choose)",
        (("repeat_penalty", 1.1, 1.0, "llama_cpp/server/types.py repeat_penalty_field"),)),
    "llama.cpp": ServerKind("llama.cpp", "llama.cpp's llama-server"),
    "vllm": ServerKind("vllm", "vLLM", batches=True),
    "sglang": ServerKind("sglang", "SGLang", batches=True),
    "ollama": ServerKind("ollama", "Ollama", batches=True),  # as many as OLLAMA_NUM_PARALLEL allows
    "tgi": ServerKind("tgi", "Text Generation Inference", batches=True),
}
_OWNED_BY = {"me": "llama-cpp-python", "llamacpp": "llama.cpp", "vllm": "vllm", "sglang": "sglang",
             "library": "ollama", "ollama": "ollama"}


def from_models(models_json: Any) -> str | None:
    """A first guess from ``/v1/models``: the servers fill ``owned_by`` each in their own way."""
    try:
        owners = {str(m.get("owned_by")) for m in models_json.get("data", []) if isinstance(m, dict)}
    except AttributeError:
        return None
    for owner in owners:
        if owner in _OWNED_BY:
            return _OWNED_BY[owner]
    return None


def from_probe(endpoint: str, data: dict[str, Any]) -> str | None:
    """What a version/info endpoint's answer says the server is."""
    if endpoint == "/openapi.json":
        title = str((data.get("info") or {}).get("title", "")) if isinstance(data.get("info"), dict) else ""
        return "llama-cpp-python" if "llama.cpp Python API" in title else None
    if endpoint == "/props" and "default_generation_settings" in data:
        return "llama.cpp"
    if endpoint == "/api/version" and "version" in data:
        return "ollama"
    if endpoint == "/info" and "model_id" in data:
        return "tgi"
    if endpoint == "/version" and "version" in data:
        return "vllm"
    return None


def serves(model: str, served: list[str]) -> bool:
    """Does a served list include ``model``? Ollama lists ``name:latest`` for ``name``."""
    return model in served or f"{model}:latest" in served
