"""Pydantic models for ``weighbridge.yaml``; every validation error names file, line and field."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PrivateAttr, ValidationError, field_validator, model_validator

from .errors import ConfigError
from .prices import Strict, TokenPrice
from .yamlsource import load_mapping

DEFAULT_STORE = "weighbridge.db"
# The embedded default's hardware price: an assumed rate for a small 2-vCPU cloud VM, stated in
# every report as the cost basis. It is an input, not a measurement; set `price:` for your own.
DEMO_HARDWARE_USD_PER_HOUR = 0.10
# A base model keeps writing the next "Question:/Answer:" pair; these end its answer there.
BASE_MODEL_STOPS = ["\nQuestion:", "\nAnswer:", "\n\n\n"]
DEFAULT_REPORT = "weighbridge-report.html"
DEFAULT_MAX_ERROR_RATE = 0.2
BATCH_AUTO_MAX = 16  # the largest batch `batch: auto` tries for an in-process model
DEFAULT_COMPLETION_TEMPLATE = "{system}{user}\nAnswer:"




class SamplingParams(Strict):
    """Decoding settings. Deterministic by default so that re-runs are comparable and cacheable."""

    temperature: float = Field(0.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_tokens: int = Field(256, ge=1, le=131072)
    seed: int = 42
    stop: list[str] = Field(default_factory=list)


class Price(Strict):
    """How a model costs money: per-token API prices, or a GPU rented by the hour."""

    input_per_mtok: float | None = Field(None, ge=0, description="USD per 1M prompt tokens")
    output_per_mtok: float | None = Field(None, ge=0, description="USD per 1M completion tokens")
    gpu_hour_usd: float | None = Field(None, ge=0, description="USD per hour of the serving hardware")

    @model_validator(mode="after")
    def _one_basis(self) -> "Price":
        token_priced = self.input_per_mtok is not None or self.output_per_mtok is not None
        if token_priced and self.gpu_hour_usd is not None:
            raise ValueError("give either per-token prices or gpu_hour_usd, not both")
        return self

    def tokens(self) -> TokenPrice | None:
        """The per-token price, when the model is priced by tokens (an unset rate costs nothing)."""
        if self.input_per_mtok is None and self.output_per_mtok is None:
            return None
        return TokenPrice(input_per_mtok=self.input_per_mtok or 0.0, output_per_mtok=self.output_per_mtok or 0.0)


_NAME = r"^[A-Za-z0-9_.:@/+-]+$"


def on_off(v: Any) -> Any:
    """YAML 1.1 reads a bare on/off as a boolean: take it as meant."""
    return ("on" if v else "off") if isinstance(v, bool) else v


def check_concurrency(v: int | str | None) -> int | str | None:
    if isinstance(v, int) and not 1 <= v <= 4096:
        raise ValueError("concurrency is a number from 1 to 4096, or auto")
    return v


def _repeated(names: Iterable[str]) -> str | None:
    """The first name that comes again, or None."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            return name
        seen.add(name)
    return None


class VariantSpec(Strict):
    """One variant of a model: the same model at another quantisation, with a LoRA adapter, or served
    at another precision. Fields given here replace the entry's; the rest are the entry's own."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.:+-]+$")
    reference: bool = Field(False, description="the variant the others are compared with (default: the first)")
    backend: str | None = None
    mode: Literal["chat", "completion"] | None = None
    bundled: str | None = None
    path: str | None = None
    lora_path: str | None = None
    base_url: str | None = None
    model: str | None = None
    params: SamplingParams | None = None
    n_ctx: int | None = Field(None, ge=128)
    n_threads: int | None = Field(None, ge=1, le=512)
    concurrency: int | Literal["auto"] | None = None
    max_concurrency: int | None = Field(None, ge=1, le=4096)
    extra_body: dict[str, Any] | None = None
    api_key_env: str | None = None
    price: Price | None = None
    revision: str | None = None
    catalog_id: str | None = None
    license: str | None = None
    structured_output: Literal["off", "json_schema", "json_object"] | None = None
    thinking: Literal["on", "off"] | None = None
    thinking_budget: int | None = Field(None, ge=1, le=131072)
    thinking_control: Literal["auto", "chat_template_kwargs", "reasoning_effort", "none"] | None = None
    reasoning_tags: tuple[str, str] | None = None
    thinking_prefilled: bool | None = None

    _on_off = field_validator("thinking", mode="before")(lambda cls, v: on_off(v))
    _concurrency = field_validator("concurrency")(lambda cls, v: check_concurrency(v))


# a variant that names a file (or an endpoint) replaces the entry's whole location, not half of it
_LOCATION = {"bundled": ("path",), "path": ("bundled",),
             "backend": ("bundled", "path", "lora_path", "base_url", "model", "api_key_env")}


class ModelSpec(Strict):
    """One model under test: which backend, where it lives, how it is prompted and what it costs."""

    name: str = Field(min_length=1, pattern=_NAME)
    backend: str = Field(min_length=1, description="llamacpp, openai, or a plugin's backend (entry point "
                                                   "weighbridge.backends)")
    # where: exactly one of these, according to the backend
    bundled: str | None = None
    path: str | None = None
    base_url: str | None = None
    model: str | None = None
    mode: Literal["chat", "completion"] = "chat"
    prompt_template: str = DEFAULT_COMPLETION_TEMPLATE
    params: SamplingParams = Field(default_factory=SamplingParams)
    concurrency: int | Literal["auto"] | None = Field(None, description=(
        "requests in flight at once: a number, or auto (found while the run goes, the default for servers that "
        "batch: vLLM, SGLang, TGI, Ollama, llama-server with several slots)"))
    max_concurrency: int = Field(256, ge=1, le=4096, description="the ceiling concurrency: auto never passes")
    # llamacpp
    n_threads: int | None = Field(None, ge=1, le=512)
    n_ctx: int = Field(4096, ge=128)
    batch: int | Literal["auto"] = Field("auto", description=(
        "answers decoded together in one llama.cpp batch: a number (1: one at a time), or auto (measured when the "
        f"model loads: the largest of 1, 2, 4 … {BATCH_AUTO_MAX} that still raises tokens/s)"))
    lora_path: str | None = Field(None, description="a LoRA adapter GGUF applied on top of the model (llama.cpp)")
    template_timeout_s: float = Field(10.0, gt=0, le=600, description="the longest the GGUF's chat template may take "
                                                                 "to render one prompt (it comes from the file)")
    structured_output: Literal["off", "json_schema", "json_object"] = Field(
        "off", description="for cases checked by json_schema: constrain the reply (a grammar in llama.cpp, "
                           "response_format on servers) to the scorer's schema, or to any JSON object")
    # reasoning models
    thinking: Literal["on", "off"] | None = Field(None, description=(
        "ask a reasoning model to think (on) or not (off); unset: the model's own default"))
    thinking_budget: int | None = Field(None, ge=1, le=131072, description=(
        "the most tokens of thinking before the answer (in-process: enforced by closing the thinking; "
        "served: sent where the server takes a budget)"))
    thinking_control: Literal["auto", "chat_template_kwargs", "reasoning_effort", "none"] = Field(
        "auto", description="how thinking on/off reaches a served model: auto (chat_template_kwargs.enable_thinking), "
                            "reasoning_effort (OpenAI-style APIs), or none")
    reasoning_tags: tuple[str, str] = Field(("<think>", "</think>"), description=(
        "the tags the model family writes its thinking between (an unpaired closing tag: a pre-filled template)"))
    thinking_prefilled: bool = Field(False, description=(
        "the model's template opens the thinking in the prompt (DeepSeek-R1's): an answer with no closing tag is "
        "all thinking"))

    @field_validator("concurrency")
    @classmethod
    def _concurrency(cls, v: int | str | None) -> int | str | None:
        return check_concurrency(v)

    @field_validator("thinking", mode="before")
    @classmethod
    def _on_off(cls, v: Any) -> Any:
        return on_off(v)

    @field_validator("reasoning_tags")
    @classmethod
    def _tags(cls, tags: tuple[str, str]) -> tuple[str, str]:
        if not all(0 < len(t) <= 64 and t.strip() for t in tags) or tags[0] == tags[1]:
            raise ValueError("reasoning_tags are two different, non-blank tags of at most 64 characters, e.g. "
                             "['<think>', '</think>']")
        return tags
    # openai
    api_key_env: str | None = None
    timeout_s: float = Field(300.0, gt=0, description="the longest wait for the next byte of an answer")
    deadline_s: float = Field(900.0, gt=0, description="the longest one request may take in all, however steadily "
                                                       "the server keeps sending")
    connect_timeout_s: float = Field(10.0, gt=0)
    max_retries: int = Field(3, ge=0, le=20)
    extra_body: dict[str, Any] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict, description="settings for a plugin backend")
    model_check: bool = Field(True, description="refuse a model id the server's /v1/models does not list")
    tokenizer: str | None = Field(None, description="a GGUF (path, or a bundled alias) whose tokenizer and chat "
                                                    "template count a served model's tokens when its server reports "
                                                    "none (else its prompt tokens are unknown and marked so)")
    # cost and provenance
    price: Price | None = None
    catalog_id: str | None = None
    license: str | None = Field(None, description="license id or alias, for models whose files weighbridge cannot read")
    revision: str | None = None
    # variants: the entry becomes one model per variant, named "<name>@<variant>"
    variants: list[VariantSpec] = Field(default_factory=list)
    variant_margin: float = Field(0.05, ge=0, le=1, description=(
        "how much lower a variant's pass rate may be (a fraction) and still count as keeping quality"))
    variant_of: str | None = Field(None, description="set by the expansion: the entry a variant came from")
    variant: str | None = Field(None, description="set by the expansion: the variant's own name")
    reference: bool = Field(False, description="set by the expansion: the variant the others are compared with")
    _expanded: list["ModelSpec"] | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _backend_from_where(cls, data: Any) -> Any:
        """``bundled:`` or ``path:`` can only mean llama.cpp in-process, ``base_url:`` a server: the
        backend is not asked for when where the model lives already says it."""
        if isinstance(data, dict) and "backend" not in data and not data.get("variants"):
            if data.get("bundled") is not None or data.get("path") is not None:
                return {**data, "backend": "llamacpp"}
            if data.get("base_url") is not None:
                return {**data, "backend": "openai"}
        return data

    @model_validator(mode="after")
    def _where(self) -> "ModelSpec":
        if self.variants:
            self._expanded = self._expand()
            return self
        from .plugins import backend_types

        known = backend_types()
        if self.backend not in known:
            raise ValueError(f"unknown backend '{self.backend}' (installed: {', '.join(known)})")
        if isinstance(self.batch, int) and not 1 <= self.batch <= 256:
            raise ValueError(f"'batch' must be auto or 1 to 256, not {self.batch}")
        if self.batch != "auto" and self.backend != "llamacpp":  # (stored specs carry the default)
            raise ValueError("'batch' belongs to llamacpp models (a server batches by its own settings)")
        if self.lora_path and self.backend != "llamacpp":
            raise ValueError("'lora_path' belongs to llamacpp models (a server applies its own adapters)")
        if self.backend not in ("llamacpp", "openai"):
            return self  # a plugin's backend checks its own settings (options:) when it is built
        if self.backend == "llamacpp":
            if (self.bundled is None) == (self.path is None):
                raise ValueError("a llamacpp model needs exactly one of 'bundled' (an alias) or 'path' (a GGUF file)")
            if self.base_url or self.model:
                raise ValueError("'base_url' and 'model' belong to openai models, not llamacpp")
        elif self.backend == "openai":
            if not self.base_url or not self.model:
                raise ValueError("an openai model needs 'base_url' (e.g. http://127.0.0.1:8000/v1) and 'model' (the server's model id)")
            if self.bundled or self.path:
                raise ValueError("'bundled' and 'path' belong to llamacpp models, not openai")
            if not self.base_url.startswith(("http://", "https://")):
                raise ValueError("'base_url' must start with http:// or https://")
        if self.tokenizer and self.backend != "openai":
            raise ValueError("'tokenizer' belongs to served (openai) models: llama.cpp in-process counts its own")
        return self

    def _expand(self) -> list["ModelSpec"]:
        names = [v.name for v in self.variants]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"two variants are named {dup[0]!r}; variant names must be unique")
        refs = [v.name for v in self.variants if v.reference]
        if len(refs) > 1:
            raise ValueError(f"variants {', '.join(refs)} are all marked reference: mark one")
        ref = refs[0] if refs else names[0]
        base = self.model_dump(exclude_unset=True, exclude={"variants", "name", "variant_margin", "variant_of",
                                                            "variant", "reference"})
        out = []
        for v in self.variants:
            given = v.model_dump(exclude_unset=True, exclude={"name", "reference"})
            merged = {k: val for k, val in base.items() if not any(k in _LOCATION.get(g, ()) for g in given)}
            merged.update(given)
            merged.update(name=f"{self.name}@{v.name}", variant_of=self.name, variant=v.name, reference=v.name == ref,
                          variant_margin=self.variant_margin)
            try:
                out.append(ModelSpec.model_validate(merged))
            except ValidationError as e:
                detail = "; ".join((".".join(map(str, err["loc"])) + ": " if err["loc"] else "")
                                   + err["msg"].removeprefix("Value error, ") for err in e.errors())
                raise ValueError(f"variant {v.name!r}: {detail}") from None
        return out

    def expanded(self) -> list["ModelSpec"]:
        """The models this entry stands for: itself, or one per variant."""
        return list(self._expanded or [self])

    @property
    def effective_concurrency(self) -> int:
        """In-process llama.cpp decodes up to its batch together (the rest wait in its queue); servers
        batch. For auto, the most it may reach (the connection pool is sized for it)."""
        if self.backend == "llamacpp":
            if isinstance(self.concurrency, int):
                return self.concurrency
            return self.batch if isinstance(self.batch, int) else BATCH_AUTO_MAX
        if self.concurrency == "auto":
            return self.max_concurrency
        return self.concurrency or 4


class Config(Strict):
    """The whole of ``weighbridge.yaml``."""

    models: list[ModelSpec] = Field(min_length=1)
    judges: list[ModelSpec] = Field(default_factory=list, description="models that grade answers (scorer 'judge')")
    suites: list[str] = Field(default_factory=lambda: ["builtin:starter"], min_length=1)
    samples: int = Field(1, ge=1, le=100)
    schedule: Literal["auto", "sequential", "parallel"] = "auto"
    profile: str | None = Field(None, description="deployment profile YAML for the license check of every run")
    sandbox: Literal["bubblewrap", "unsafe-local"] = Field(
        "bubblewrap", description="isolation for model code (python_tests); unsafe-local runs it unisolated")
    max_error_rate: float = Field(DEFAULT_MAX_ERROR_RATE, ge=0, le=1, description=(
        "a model with more errored jobs than this share makes the run exit 3 with a banner"))
    store: str = DEFAULT_STORE
    report: str = DEFAULT_REPORT
    base_dir: str = Field(".", exclude=True)

    @field_validator("models")
    @classmethod
    def _unique_names(cls, models: list[ModelSpec]) -> list[ModelSpec]:
        twice = _repeated(m.name for m in models)
        if twice:
            raise ValueError(f"two models are named '{twice}'; names must be unique")
        return models

    @model_validator(mode="after")
    def _expand_variants(self) -> "Config":
        if any(m.variants for m in self.models):
            self.models = [v for m in self.models for v in m.expanded()]
            twice = _repeated(m.name for m in self.models)
            if twice:
                raise ValueError(f"two models are named '{twice}' once variants are expanded; names must be unique")
        return self

    @model_validator(mode="after")
    def _judges_apart(self) -> "Config":
        clash = {j.name for j in self.judges} & {m.name for m in self.models}
        if clash:
            raise ValueError(f"judges and models share the name(s) {sorted(clash)}; give the judge its own name")
        return self

    def resolve(self, relative: str) -> Path:
        """Paths in the config are relative to the config file, not to the current directory."""
        p = Path(relative).expanduser()
        return p if p.is_absolute() else Path(self.base_dir) / p

    def model(self, name: str) -> ModelSpec:
        for m in self.models:
            if m.name == name:
                return m
        raise ConfigError(f"no model named '{name}' (known: {', '.join(m.name for m in self.models)})")


def load_config(path: str | Path) -> Config:
    """Read and validate a config file; raises ConfigError naming file, line and field."""
    cfg = load_mapping(path, Config, expected="expected a mapping with at least 'models:'")
    cfg.base_dir = str(Path(path).resolve().parent)
    return cfg


DEFAULT_SUITES = ["builtin:starter", "builtin:tools[::4]"]


def default_config() -> Config:
    """The embedded default: the three bundled models on the starter suite and every fourth
    builtin:tools case, nothing to configure. 128 output tokens each keeps `make demo` near five
    minutes on 2 cores; SmolLM2 and Gemma take no tools, so they are given no tool case."""
    hardware = Price(gpu_hour_usd=DEMO_HARDWARE_USD_PER_HOUR)
    short = SamplingParams(max_tokens=128)
    return Config(models=[
        ModelSpec(name="qwen2.5-coder-0.5b", backend="llamacpp", bundled="qwen2.5-coder-0.5b", params=short,
                  price=hardware),
        ModelSpec(name="smollm2-135m", backend="llamacpp", bundled="smollm2-135m", params=short, price=hardware),
        ModelSpec(name="gemma3-270m", backend="llamacpp", bundled="gemma3-270m", mode="completion",
                  params=SamplingParams(max_tokens=128, stop=BASE_MODEL_STOPS), price=hardware),
    ], suites=list(DEFAULT_SUITES))
