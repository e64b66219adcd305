"""Counting a served model's tokens when its server reports none, with the model's own tokenizer.

llama-cpp-python's server (and others without ``stream_options``) sends no usage, so a token-priced
cost would count its prompts as free. A model entry may name a GGUF whose vocabulary and chat
template are the served model's (``tokenizer:`` a path, or a bundled alias): the prompt is rendered
with that template, exactly as the in-process backend renders it, and tokenized with llama.cpp's
tokenizer (the vocabulary only: no weights are loaded). The template runs in its bounded child
process, like every template from a file.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from ..core.errors import BackendUnavailable
from .base import Request


class GGUFTokenCounter:
    """Loaded on first use; safe to call from worker threads (one at a time)."""

    def __init__(self, path: Path, name: str, template_timeout_s: float = 10.0) -> None:
        self.path = path
        self.name = name
        self.template_timeout_s = template_timeout_s
        self._vocab: Any = None
        self._formatter: Any = None
        self._lock = threading.Lock()

    def check(self) -> None:
        """Load the vocabulary and compile the template now: a bad file fails preflight, not a job."""
        with self._lock:
            self._load()

    def _load(self) -> Any:
        if self._vocab is not None:
            return self._vocab
        from llama_cpp import Llama

        from .chat_template import TemplateError, TemplateRenderer
        from .llama_runtime import quiet_stderr

        if not self.path.is_file():
            raise BackendUnavailable(self.name, f"tokenizer: {self.path} is not a file",
                                     "tokenizer: names a GGUF (a path relative to the config, or a bundled alias)")
        try:
            with quiet_stderr(True):
                vocab = Llama(model_path=str(self.path), vocab_only=True, verbose=False)
        except (ValueError, RuntimeError) as e:
            raise BackendUnavailable(self.name, f"tokenizer: llama.cpp could not read {self.path}: {e}",
                                     "tokenizer: names a complete GGUF") from None
        template = vocab.metadata.get("tokenizer.chat_template")
        if template:
            eos, bos = vocab.token_eos(), vocab.token_bos()
            self._formatter = TemplateRenderer(
                template, eos_token=vocab._model.token_get_text(eos) if eos != -1 else "",
                bos_token=vocab._model.token_get_text(bos) if bos != -1 else "", timeout_s=self.template_timeout_s)
            try:
                self._formatter.check()
            except TemplateError as e:
                raise BackendUnavailable(self.name, f"tokenizer: {e}", "the GGUF's tokenizer.chat_template") from None
        self._vocab = vocab
        return vocab

    def prompt_tokens(self, request: Request) -> int | None:
        """The prompt's tokens as the model sees them; None for a chat prompt when the GGUF has no
        chat template (then nothing honest can be counted)."""
        from .chat_template import template_messages

        with self._lock:
            vocab = self._load()
            if request.messages is None:
                return len(vocab.tokenize((request.prompt or "").encode("utf-8"), add_bos=True, special=True))
            if self._formatter is None:
                return None
            formatted = self._formatter(messages=template_messages(request.messages), tools=request.tools or None,
                                        tool_choice=request.tool_choice)
            return len(vocab.tokenize(formatted.prompt.encode("utf-8"), add_bos=not formatted.added_special,
                                      special=True))

    def text_tokens(self, text: str) -> int:
        with self._lock:
            vocab = self._load()
            return len(vocab.tokenize(text.encode("utf-8"), add_bos=False, special=False)) if text else 0

    def close(self) -> None:
        if self._formatter is not None:
            self._formatter.close()


MAX_COUNT = 10**8  # more prompt tokens than any context holds: a server's answer past this is refused


class ServerTokenCounter:
    """A server's own tokenize endpoint, where it has one, renders and counts a prompt exactly as that
    server will: vLLM's ``/tokenize`` takes the chat messages (and tools) and applies the model's
    template; llama.cpp's ``llama-server`` renders with ``/apply-template`` and counts with
    ``/tokenize``. Its answers are the server's word: a count must be a whole number in range, or
    the prompt stays uncounted."""

    KINDS = ("vllm", "llama.cpp")

    def __init__(self, kind: str, root: str, model: str, post_json: Any) -> None:
        self.kind, self.root, self.model, self.post_json = kind, root, model, post_json

    async def prompt_tokens(self, request: Request) -> int | None:
        if self.kind == "vllm":
            body: dict[str, Any] = {"model": self.model}
            if request.messages is None:
                body["prompt"] = request.prompt or ""
            else:
                body.update(messages=request.messages, add_generation_prompt=True,
                            **({"tools": request.tools} if request.tools else {}))
            answer = await self.post_json(self.root + "/tokenize", body)
            count = answer.get("count") if isinstance(answer, dict) else None
            return count if type(count) is int and 0 <= count <= MAX_COUNT else None
        if request.messages is None:
            text, special = request.prompt or "", True
        else:
            rendered = await self.post_json(self.root + "/apply-template",
                                            {"messages": request.messages,
                                             **({"tools": request.tools} if request.tools else {})})
            text = rendered.get("prompt") if isinstance(rendered, dict) else None
            if not isinstance(text, str):
                return None
            special = False  # the rendered template already holds its special tokens as text
        answer = await self.post_json(self.root + "/tokenize", {"content": text, "add_special": special,
                                                                "parse_special": True})
        tokens = answer.get("tokens") if isinstance(answer, dict) else None
        return len(tokens) if isinstance(tokens, list) and len(tokens) <= MAX_COUNT else None
