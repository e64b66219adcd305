"""In-process llama.cpp through llama-cpp-python: a GGUF file or a bundled alias.

Chat mode formats messages with the model's own chat template (read from the GGUF), completion
mode sends a plain prompt for base models. The model is loaded once per run, on first use, and all
llama.cpp work runs on one dedicated thread (see ``LLAMA_THREAD``).
"""

from __future__ import annotations

import asyncio
import threading
import time
from importlib.metadata import version as pkg_version
from pathlib import Path
from typing import Any, NamedTuple

from ..core.config import BATCH_AUTO_MAX
from ..core.errors import BackendError, BackendUnavailable
from ..core.gguf import GGUFError, read_metadata, tokenizer_facts
from ..core.hashing import cached_sha256, sha256_file, sha256_text, stable_hash
from . import llama_budget, toolcalls
from .base import BackendBase, Generation, Request, Timings
from .bundled import resolve_bundled
from .chat_template import (TemplateError, TemplateRenderer, compile_template, render_completion_prompt,
                            template_messages)
from .grammar import json_grammar
from .llama_runtime import LLAMA_THREAD, llama_cpp_build, quiet_stderr
from .llama_sched import BatchScheduler

_META_KEYS = ("general.name", "general.basename", "general.size_label", "general.license", "general.architecture",
              "general.file_type", "general.quantization_version", "general.finetune", "general.type")


class Prepared(NamedTuple):
    """One request made ready to decode: its prompt tokens, stop strings and grammar."""

    tokens: list[int]
    stops: list[str]
    grammar: Any
    grammar_note: str | None


class LlamaCppBackend(BackendBase):
    def __init__(self, spec: Any, base_dir: str = ".", expected_sha256: str | None = None) -> None:
        self.spec = spec
        self.expected_sha256 = expected_sha256  # pinned by weighbridge.lock: checked before loading
        self.name = spec.name
        self.base_dir = base_dir
        self._path: Path | None = None
        self._meta: dict[str, Any] | None = None
        self._sha256: str | None = None
        self._llama: Any = None
        self._formatter: Any = None
        self._vocab: Any = None
        self._lock = threading.Lock()
        self.calls = 0
        self.load_seconds: float | None = None
        self.memory: Any = None  # memprobe.ModelMemory once loaded
        from ..core.contention import default_threads

        self.n_threads: int = spec.n_threads or default_threads()
        # answers decoded together (llama_sched); the engine may keep this many in flight, the rest queue
        self.max_parallel = min(spec.batch if isinstance(spec.batch, int) else BATCH_AUTO_MAX,
                                spec.concurrency if isinstance(spec.concurrency, int) else 1 << 16)
        self._batcher = BatchScheduler(self, spec.batch, self.max_parallel) if self.max_parallel > 1 else None

    # -- where the file is and what it is -----------------------------------------------------
    @property
    def path(self) -> Path:
        if self._path is None:
            if self.spec.bundled:
                self._path = resolve_bundled(self.spec.bundled, self.name)
            else:
                p = Path(self.spec.path).expanduser()
                self._path = p if p.is_absolute() else Path(self.base_dir) / p
        return self._path

    def _check_file(self) -> None:
        p = self.path
        if not p.exists():
            raise BackendUnavailable(self.name, f"GGUF file not found: {p}",
                                     "the 'path' in weighbridge.yaml (relative paths start at the config's folder)")
        if p.is_dir():
            raise BackendUnavailable(self.name, f"{p} is a directory", "'path' must name a .gguf file")
        try:
            self._meta = read_metadata(p)
        except GGUFError as e:
            raise BackendUnavailable(self.name, str(e), "that the file is a complete GGUF model (re-download it?)") from None
        lora = self.lora
        if lora is not None:
            try:
                kind = read_metadata(lora).get("general.type")
            except (GGUFError, OSError) as e:
                raise BackendUnavailable(self.name, f"LoRA adapter {lora}: {e}",
                                         "'lora_path' must name a LoRA adapter in GGUF form (convert_lora_to_gguf.py)") from None
            if kind != "adapter":
                raise BackendUnavailable(self.name, f"{lora} is not a LoRA adapter (general.type {kind!r})",
                                         "'lora_path' must name an adapter GGUF, not a model")

    @property
    def lora(self) -> Path | None:
        if not self.spec.lora_path:
            return None
        p = Path(self.spec.lora_path).expanduser()
        return p if p.is_absolute() else Path(self.base_dir) / p

    @property
    def metadata(self) -> dict[str, Any]:
        if self._meta is None:
            self._check_file()
        return self._meta or {}

    @property
    def sha256(self) -> str:
        if self._sha256 is None:
            self._sha256 = cached_sha256(self.path)
        return self._sha256

    @property
    def chat_template(self) -> str | None:
        return self.metadata.get("tokenizer.chat_template")

    def context_window(self) -> int:
        return int(self.spec.n_ctx)

    def count_tokens(self, text: str) -> int:
        """The prompt's length in this model's own tokens (its vocabulary alone is loaded, once)."""
        if self._vocab is None:
            from llama_cpp import Llama

            with quiet_stderr(True):
                self._vocab = Llama(model_path=str(self.path), vocab_only=True, verbose=False)
        return len(self._vocab.tokenize(text.encode("utf-8"), add_bos=True, special=False))

    def tool_support(self) -> str | None:
        """Why this model cannot be offered tools, or None when it can (read from the GGUF, no load)."""
        if self.spec.mode == "completion":
            return "a completion-mode (base) model takes no tools"
        if not toolcalls.has_tool_template(self.chat_template):
            return "its chat template renders no tools"
        return None

    @property
    def batches(self) -> bool:
        """Does this model decode several answers together (``batch`` other than 1)?"""
        return self._batcher is not None

    @property
    def thinking_switch(self) -> bool:
        """Does the GGUF's chat template read ``enable_thinking`` (Qwen3's switch)?"""
        return "enable_thinking" in (self.chat_template or "")

    def identity(self) -> dict[str, Any]:
        ident = {"backend": "llamacpp", "sha256": self.sha256, "mode": self.spec.mode, "n_ctx": self.spec.n_ctx}
        if self.lora is not None:
            ident["lora_sha256"] = cached_sha256(self.lora)
        if self.spec.mode == "completion":
            ident["prompt_template"] = self.spec.prompt_template
        if self.batches:  # batched arithmetic can flip a greedy choice: its answers are not one-at-a-time ones
            ident["decoding"] = "batched"
        return ident

    def manifest(self) -> dict[str, Any]:
        tmpl = self.chat_template
        return {
            "backend": "llamacpp", "path": str(self.path), "bundled": self.spec.bundled,
            "sha256": self.sha256, "size_bytes": self.path.stat().st_size,
            "gguf": {k: self.metadata[k] for k in _META_KEYS if k in self.metadata},
            "chat_template_sha256": sha256_text(tmpl) if tmpl else None,
            "tokenizer": tokenizer_facts(self.metadata),
            "mode": self.spec.mode,
            "prompt_template": self.spec.prompt_template if self.spec.mode == "completion" else None,
            "llama_cpp_python": pkg_version("llama-cpp-python"), **llama_cpp_build(),
            "n_threads": self.n_threads, "n_ctx": self.spec.n_ctx, "params": self.spec.params.model_dump(),
            **({"lora": {"path": str(self.lora), "sha256": cached_sha256(self.lora),
                         "size_bytes": self.lora.stat().st_size}} if self.lora is not None else {}),
        }


    # -- lifecycle ----------------------------------------------------------------------------
    def _lock_mismatch(self, actual: str) -> BackendUnavailable:
        return BackendUnavailable(self.name, f"{self.path} does not match weighbridge.lock (sha256 {actual[:16]}…, "
                                             f"locked {self.expected_sha256[:16]}…)",  # type: ignore[index]
                                  "run `weighbridge verify`; if the change is intended, re-lock with `weighbridge lock`")

    async def preflight(self) -> None:
        self._check_file()
        if self.expected_sha256 and self.sha256 != self.expected_sha256:
            raise self._lock_mismatch(self.sha256)
        if self.spec.mode == "chat" and not self.chat_template:
            raise BackendUnavailable(self.name, "the GGUF has no chat template (tokenizer.chat_template)",
                                     "use 'mode: completion' for base models")
        if self.spec.mode == "chat":
            try:
                compile_template(self.chat_template or "")
            except TemplateError as e:
                raise BackendUnavailable(self.name, str(e), "the GGUF's tokenizer.chat_template; "
                                         "mode: completion runs the model without it") from None

    def _load(self) -> Any:
        if self._llama is None:
            from llama_cpp import Llama

            if self.expected_sha256:  # the real bytes, not the cached hash: they are what gets loaded
                actual = sha256_file(self.path)
                if actual != self.expected_sha256:
                    raise self._lock_mismatch(actual)
            from .memprobe import ModelMemory

            files = [self.path] + ([self.lora] if self.lora is not None else [])
            self.memory = ModelMemory(files)
            t0 = time.perf_counter()
            try:
                self._llama = Llama(model_path=str(self.path), n_ctx=self.spec.n_ctx, n_threads=self.n_threads,
                                    n_threads_batch=self.n_threads, seed=self.spec.params.seed, verbose=False,
                                    lora_path=str(self.lora) if self.lora is not None else None)
            except (ValueError, RuntimeError) as e:
                raise BackendUnavailable(self.name, f"llama.cpp could not load {self.path}: {e}",
                                         "that the file is a complete GGUF this llama-cpp-python version supports") from None
            self.load_seconds = time.perf_counter() - t0
            self.memory.sample()
            if self.spec.mode == "chat":
                llm = self._llama
                eos_id, bos_id = llm.token_eos(), llm.token_bos()
                self._formatter = TemplateRenderer(
                    self.chat_template or "",
                    eos_token=llm._model.token_get_text(eos_id) if eos_id != -1 else "",
                    bos_token=llm._model.token_get_text(bos_id) if bos_id != -1 else "",
                    timeout_s=self.spec.template_timeout_s)
                try:
                    self._formatter.check()
                except TemplateError as e:
                    raise BackendUnavailable(self.name, str(e), "the GGUF's tokenizer.chat_template; "
                                             "mode: completion runs the model without it") from None
        return self._llama

    async def load(self) -> None:
        """Load the model now (on the llama.cpp thread) instead of on the first request."""
        await asyncio.get_running_loop().run_in_executor(LLAMA_THREAD, self._load_quietly)

    def _load_quietly(self) -> None:
        with self._lock, quiet_stderr(self._llama is None):
            self._load()

    def _close(self) -> None:
        with self._lock:
            if self._batcher is not None:
                self._batcher.close()
            if self._vocab is not None:
                self._vocab.close()
                self._vocab = None
            if self._llama is not None:
                self._llama.close()
                self._llama = None
            if self._formatter is not None:
                self._formatter.close()
                self._formatter = None

    def runtime_facts(self) -> dict[str, Any] | None:
        """What was measured while this model ran (resident memory, load time); None if it never loaded."""
        mem = self.memory.facts() if self.memory is not None else None
        if mem is None:
            return None
        batch = self._batcher.facts() if self._batcher is not None else None
        return {**mem, "load_seconds": round(self.load_seconds or 0.0, 3), **({"batch": batch} if batch else {})}

    async def aclose(self) -> None:
        await asyncio.get_running_loop().run_in_executor(LLAMA_THREAD, self._close)

    # -- generation ---------------------------------------------------------------------------
    async def generate(self, request: Request) -> Generation:
        if self._batcher is not None and request.applied_thinking_budget is None:
            return await self._batcher.submit(request)  # a thinking budget watches one answer: it decodes alone
        return await asyncio.get_running_loop().run_in_executor(LLAMA_THREAD, self._generate_sync, request)

    def _prompt_tokens(self, llm: Any, request: Request) -> tuple[list[int], list[str]]:
        stops = list(request.stop)
        if self.spec.mode == "chat":
            messages = request.messages or [{"role": "user", "content": request.prompt or ""}]
            if request.tools and not toolcalls.has_tool_template(self.chat_template):
                raise BackendError(f"model '{self.name}' has no tool support: its chat template "
                                   "(tokenizer.chat_template) never renders 'tools', so the offered functions would "
                                   "not reach it", kind="no_tool_support")
            switch = self.thinking_switch
            try:
                formatted = self._formatter(messages=template_messages(messages), tools=request.tools or None,
                                            tool_choice=request.tool_choice,
                                            enable_thinking=(request.thinking == "on") if request.thinking and switch
                                            else None)
            except TemplateError as e:
                raise BackendError(f"model '{self.name}': {e}", kind="template") from None
            prompt = formatted.prompt
            if request.thinking and not switch:
                # no switch in the template: off writes an empty thinking block after the generation prompt
                # (what Qwen3's template writes for enable_thinking=false), on opens the thinking there
                # (what DeepSeek-R1's template does)
                start, end = self.spec.reasoning_tags
                prompt += f"{start}\n\n{end}\n\n" if request.thinking == "off" else f"{start}\n"
            tokens = llm.tokenize(prompt.encode("utf-8"), add_bos=not formatted.added_special, special=True)
            if formatted.stop:
                stops += [formatted.stop] if isinstance(formatted.stop, str) else list(formatted.stop)
        else:
            if request.tools:
                raise BackendError(f"model '{self.name}' runs in completion mode (a base model): it cannot be offered "
                                   "tools; give tool cases to chat models", kind="no_tool_support")
            prompt = request.prompt if request.prompt is not None else render_completion_prompt(
                self.spec.prompt_template, request.messages or [])
            tokens = llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
        return tokens, stops

    def _prepare(self, llm: Any, request: Request) -> Prepared:
        """The prompt's tokens, the stops, the grammar: what decoding one answer needs, checked."""
        tokens, stops = self._prompt_tokens(llm, request)
        if len(tokens) + request.max_tokens > self.spec.n_ctx:
            raise BackendError(f"prompt ({len(tokens)} tokens) + max_tokens ({request.max_tokens}) exceeds n_ctx "
                               f"({self.spec.n_ctx}); raise n_ctx for model '{self.name}'", kind="context_length")
        grammar, grammar_note = None, None
        schema = request.schema()
        if schema is not None or (request.response_format or {}).get("type") == "json_object":
            grammar, grammar_note = json_grammar(llm, schema, self.name)  # the reply cannot be anything but this JSON
        return Prepared(tokens, stops, grammar, grammar_note)

    def _generate_sync(self, request: Request) -> Generation:
        with self._lock, quiet_stderr(self.calls == 0):
            llm = self._load()
            self.calls += 1
            prep = self._prepare(llm, request)
            timings = Timings(sent=time.perf_counter_ns())
            pieces, finish, forced = llama_budget.decode(llm, prep.tokens, request, prep.stops, prep.grammar, timings,
                                                         request.applied_thinking_budget, self.spec.reasoning_tags)
            return self._result(llm, request, prep, "".join(pieces), finish, timings, forced)

    def _result(self, llm: Any, request: Request, prep: Prepared, text: str, finish: str | None, timings: Timings,
                forced: bool = False) -> Generation:
        """One decoded answer as a Generation (tool calls taken out of its text), however it was decoded."""
        timings.done = time.perf_counter_ns()
        if self.memory is not None:
            self.memory.sample()
        completion_tokens = len(llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)) if text else 0
        calls = None
        if request.tools:  # the template asked for calls in text: take them out as data
            text, calls = toolcalls.from_text(text, request.tools)
            if calls and finish == "stop":
                finish = "tool_calls"
        raw: dict[str, Any] = {"stop": prep.stops}
        if request.thinking == "on" and not self.thinking_switch:
            raw["thinking_opened"] = True  # the prompt opened the thinking: the text starts inside it
        if prep.grammar_note:
            raw["grammar_note"] = prep.grammar_note
        if request.applied_thinking_budget is not None:
            raw["thinking_budget"] = {"budget": request.applied_thinking_budget, "closed_by_weighbridge": forced}
        return Generation.from_timings(timings, text=text, finish_reason=finish, prompt_tokens=len(prep.tokens),
                                       completion_tokens=completion_tokens, token_source="tokenizer",
                                       raw=raw, tool_calls=calls)
