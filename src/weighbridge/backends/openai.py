"""Any OpenAI-compatible server (vLLM, SGLang, Ollama /v1, llama.cpp server, TGI, hosted APIs).

Always streams, so time to first token is measured, not guessed. Retries with exponential backoff
on 429, 5xx and connection failures, honouring ``Retry-After``. The API key is read from the env
var the config names and is never logged, stored or put in a manifest.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx

from .. import __version__
from ..core.errors import BackendError, BackendUnavailable
from ..core.hashing import sha256_text
from ..core.scrub import scrub, secret_env
from . import servers, toolcalls
from .fingerprint import Fingerprint, read_fingerprint
from .token_count import GGUFTokenCounter, ServerTokenCounter
from .base import BackendBase, Generation, Request, Timings
from ..wire.openai import Accumulator, MalformedResponse, loads, parse_chunk
from ..wire.retry import StreamOptions, backoff, retry_after, retryable, wait_before_retry
from .sse import DONE, iter_events
from .toolcalls import calls_from_slots

_SMALL_BODY = 4 << 20  # /models, version probes, error bodies: nothing honest is larger


async def _read_capped(resp: httpx.Response, limit: int = _SMALL_BODY) -> bytes:
    """At most ``limit`` bytes of a body: a server cannot make weighbridge hold a gigabyte it sent."""
    out = bytearray()
    async for chunk in resp.aiter_bytes():
        out += chunk[: limit - len(out)]
        if len(out) >= limit:
            break
    return bytes(out)


async def _get_json(client: httpx.AsyncClient, url: str, timeout: float) -> tuple[int, Any, httpx.Headers]:
    """(status, strict JSON body or None, headers) of a GET, its body bounded."""
    async with client.stream("GET", url, timeout=timeout) as resp:
        body = await _read_capped(resp)
        try:
            data = loads(body) if resp.status_code == 200 and len(body) < _SMALL_BODY else None
        except MalformedResponse:
            data = None
        return resp.status_code, data, resp.headers


class OpenAIBackend(BackendBase):
    def __init__(self, spec: Any, base_dir: str = ".", expected_sha256: str | None = None) -> None:
        self.spec = spec
        self.name = spec.name
        self.base_url = spec.base_url.rstrip("/")
        self._stream_options = StreamOptions()  # an older server that rejects it is asked again without
        self._response_format = True  # dropped for servers that reject it; the caller's parser then checks
        self._client: httpx.AsyncClient | None = None
        self.calls = 0
        self.pushbacks = 0  # retried 429s, 5xx, connection failures and timeouts, over the run
        self.server_models: list[str] | None = None
        self.server_header: str | None = None
        self.server_info: dict[str, Any] | None = None
        self.server_kind: str | None = None
        self.server_slots: int | None = None
        self.fingerprint: Fingerprint | None = None
        self.server_template_sha256: str | None = None  # the chat template the server says it renders
        self.counter: GGUFTokenCounter | None = None
        self.server_counter: ServerTokenCounter | None = None
        if spec.tokenizer:
            from .bundled import BUNDLED, resolve_bundled

            where = (resolve_bundled(spec.tokenizer, spec.name) if spec.tokenizer in BUNDLED
                     else Path(spec.tokenizer).expanduser())
            self.counter = GGUFTokenCounter(where if where.is_absolute() else Path(base_dir) / where, spec.name,
                                            spec.template_timeout_s)

    # -- identity and manifest ----------------------------------------------------------------
    def identity(self) -> dict[str, Any]:
        """What answers are cached under: the endpoint and model id, and what is behind them where the
        server says (a new GGUF behind the same alias is another model, so its answers are not reused)."""
        ident = {"backend": "openai", "base_url": self.base_url, "model": self.spec.model, "mode": self.spec.mode}
        if self.fingerprint is not None and self.fingerprint.sha256:
            ident["fingerprint"] = self.fingerprint.sha256
        if self.spec.extra_body:  # it goes into every request body: another value is another answer
            ident["extra_body"] = self.spec.extra_body
        return ident

    def manifest(self) -> dict[str, Any]:
        return {"backend": "openai", "base_url": self.base_url, "model": self.spec.model, "mode": self.spec.mode,
                "client": f"httpx {httpx.__version__}", "api_key_env": self.spec.api_key_env,
                "server_models": self.server_models, "server_header": self.server_header,
                "server_info": self.server_info, "server_kind": self.server_kind, "server_slots": self.server_slots,
                "fingerprint": self.fingerprint.to_dict() if self.fingerprint else None,
                "tokenizer": str(self.counter.path) if self.counter else None, "params": self.spec.params.model_dump(),
                "extra_body_keys": sorted(map(str, self.spec.extra_body)),
                "chat_template_sha256": self.server_template_sha256}

    def tool_support(self) -> str | None:
        """A chat server may take tools (whether it answers with calls is what the cases measure)."""
        return "/completions takes no tools (mode: completion)" if self.spec.mode == "completion" else None

    # -- lifecycle ----------------------------------------------------------------------------
    def _headers(self) -> dict[str, str]:
        headers = {"User-Agent": f"weighbridge/{__version__}"}
        if self.spec.api_key_env:
            key = secret_env(self.spec.api_key_env)
            if not key:
                raise BackendUnavailable(self.name, f"the env var {self.spec.api_key_env} (api_key_env) is not set",
                                         f"export {self.spec.api_key_env}=... before running")
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            timeout = httpx.Timeout(self.spec.timeout_s, connect=self.spec.connect_timeout_s)
            limits = httpx.Limits(max_connections=self.spec.effective_concurrency + 2,
                                  max_keepalive_connections=self.spec.effective_concurrency + 2)
            self._client = httpx.AsyncClient(timeout=timeout, limits=limits, headers=self._headers())
        return self._client

    async def preflight(self) -> None:
        """GET /models: proves the server answers and the key is accepted, before a run is created."""
        hint = f"is the server running, and is base_url right (it usually ends in /v1)? tried {self.base_url}/models"
        try:
            status, listing, headers = await _get_json(self.client(), f"{self.base_url}/models",
                                                       self.spec.connect_timeout_s)
        except httpx.TimeoutException:
            raise BackendUnavailable(self.name, f"no answer from {self.base_url} within {self.spec.connect_timeout_s:g}s", hint) from None
        except httpx.HTTPError as e:
            raise BackendUnavailable(self.name, f"cannot reach {self.base_url} ({type(e).__name__}: {e})", hint) from None
        if status in (401, 403):
            raise BackendUnavailable(self.name, f"the server refused the API key (HTTP {status})",
                                     f"the key in {self.spec.api_key_env or '(no api_key_env set)'}")
        if not 200 <= status < 300 and self.spec.model_check:
            raise BackendUnavailable(self.name, f"GET {self.base_url}/models answered HTTP {status}: weighbridge cannot "
                                                "use this server", f"{hint}; pass --no-model-check (or set "
                                                "model_check: false) to try it anyway")
        if status == 200 and isinstance(listing, dict) and isinstance(listing.get("data"), list):
            self.server_models = [m["id"][:200] for m in listing["data"][:1000]
                                  if isinstance(m, dict) and isinstance(m.get("id"), str)]
            self.server_kind = servers.from_models(listing)
        self.server_header = (headers.get("server") or "")[:200] or None
        self.server_info = await self._server_info()
        if self.spec.model_check and self.server_models and not servers.serves(self.spec.model, self.server_models):
            raise BackendUnavailable(
                self.name, f"{self.base_url} does not serve model '{self.spec.model}' (it serves: "
                           f"{', '.join(map(str, self.server_models[:20]))})",
                "set model: to one of those ids; for a server that answers for ids it does not list, "
                "set model_check: false on the model or pass --no-model-check")
        if self.counter is not None:
            await asyncio.to_thread(self.counter.check)
        if self.server_kind in ServerTokenCounter.KINDS:  # the server counts its own prompts when usage is missing
            self.server_counter = ServerTokenCounter(self.server_kind, self.base_url.removesuffix("/v1"),
                                                     self.spec.model, self._probe_post)
        self.fingerprint = await read_fingerprint(self.server_kind, self.spec.model, self.base_url.removesuffix("/v1"),
                                                  self.base_url, listing, self._probe_get, self._probe_post)
        if self.server_kind == "llama.cpp":  # llama-server says which chat template it renders: kept for fidelity
            props = await self._probe_get(self.base_url.removesuffix("/v1") + "/props")
            template = props.get("chat_template") if isinstance(props, dict) else None
            if isinstance(template, str) and template and len(template) <= 1 << 20:
                self.server_template_sha256 = sha256_text(template)
            slots = props.get("total_slots") if isinstance(props, dict) else None  # its --parallel
            if isinstance(slots, int) and not isinstance(slots, bool) and 1 <= slots <= 65536:
                self.server_slots = slots

    async def _probe_get(self, url: str) -> Any:
        """A metadata GET for the fingerprint: its JSON, or None for any failure (best effort)."""
        try:
            return (await _get_json(self.client(), url, 5.0))[1]
        except httpx.HTTPError:
            return None

    async def _probe_post(self, url: str, body: dict[str, Any]) -> Any:
        """A small POST for the fingerprint probe: its strict JSON, or None for any failure."""
        try:
            async with self.client().stream("POST", url, json=body, timeout=self.spec.connect_timeout_s + 60) as resp:
                raw = await _read_capped(resp)
                return loads(raw) if resp.status_code == 200 and len(raw) < _SMALL_BODY else None
        except (httpx.HTTPError, MalformedResponse):
            return None

    async def _server_info(self) -> dict[str, Any] | None:
        """Best effort: the version endpoint of whichever server this is, for the run manifest."""
        root = self.base_url.removesuffix("/v1")
        paths = ("/version", "/api/version", "/info", "/props")  # vLLM, Ollama, TGI, llama.cpp server

        async def probe(path: str) -> dict[str, Any] | None:
            try:
                _, data, _ = await _get_json(self.client(), root + path, 2.0)
            except httpx.HTTPError:
                return None
            if not isinstance(data, dict):
                return None
            kind = servers.from_probe(path, data)
            keep = {k: v for k, v in data.items() if isinstance(v, (str, int, float, bool)) and len(str(v)) < 200}
            return {"endpoint": path, **({"kind": kind} if kind else {}), **dict(list(keep.items())[:20])}

        found = [r for r in await asyncio.gather(*(probe(p) for p in paths)) if r]
        if self.server_kind is None:
            self.server_kind = next((r["kind"] for r in found if "kind" in r), None)
        return found[0] if found else None

    async def aclose(self) -> None:
        if self.counter is not None:
            self.counter.close()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # -- generation ---------------------------------------------------------------------------
    def _body(self, request: Request) -> tuple[str, dict[str, Any]]:
        body: dict[str, Any] = {"model": self.spec.model, "temperature": request.temperature, "top_p": request.top_p,
                                "max_tokens": request.max_tokens, "seed": request.seed, "stream": True}
        if request.stop:
            body["stop"] = request.stop
        if self._stream_options.wanted(self.base_url):
            body["stream_options"] = {"include_usage": True}
        if self._response_format:
            if request.response_format is not None:
                body["response_format"] = request.response_format
            elif request.json_schema is not None:
                body["response_format"] = {"type": "json_schema",
                                           "json_schema": {"name": "reply", "schema": request.json_schema, "strict": True}}
        if request.tools:
            body["tools"] = request.tools
            if request.tool_choice is not None:
                body["tool_choice"] = request.tool_choice
        if request.thinking is not None and self.spec.thinking_control != "none":
            on = request.thinking == "on"
            if self.spec.thinking_control == "reasoning_effort":  # OpenAI-style APIs (gpt-oss): no "off", the least
                body["reasoning_effort"] = "high" if on else "low"
            else:  # vLLM, SGLang and llama.cpp's server hand these to the chat template (Qwen3's switch)
                body["chat_template_kwargs"] = {"enable_thinking": on}
        if request.messages is not None:
            body["messages"] = request.messages
            path = "/chat/completions"
        else:
            if request.tools:
                raise BackendError(f"model '{self.name}' runs in completion mode: /completions takes no tools; "
                                   "give tool cases to chat models", kind="no_tool_support")
            body["prompt"] = request.prompt
            path = "/completions"
        body.update(self.spec.extra_body)
        return self.base_url + path, body

    async def generate(self, request: Request) -> Generation:
        attempt = 0
        while True:
            try:
                async with asyncio.timeout(self.spec.deadline_s):  # a total deadline, not only a per-read one
                    return await self._once(request)
            except TimeoutError:
                raise BackendError(f"no whole answer within {self.spec.deadline_s:g} s (deadline_s); a server that "
                                   "keeps sending past max_tokens never finishes", kind="deadline") from None
            except BackendError as e:
                if not e.retryable or attempt >= self.spec.max_retries:
                    raise
                if e.kind == "http_429" or e.kind.startswith("http_5") or e.kind in ("connection", "timeout"):
                    self.pushbacks += 1  # the server pushed back: auto concurrency backs off
                delay = e.retry_after if e.retry_after is not None else backoff(attempt)
                attempt += 1
                await wait_before_retry(delay)  # under concurrency: auto its place is given back meanwhile

    async def _once(self, request: Request) -> Generation:
        url, body = self._body(request)
        timings = Timings(sent=time.perf_counter_ns())
        self.calls += 1
        acc = Accumulator()
        try:
            async with self.client().stream("POST", url, json=body) as resp:
                if resp.status_code != 200:
                    detail = (scrub((await _read_capped(resp, 2000)).decode("utf-8", "replace")) or "")[:300]
                    if resp.status_code == 400 and "response_format" in body and "response_format" in detail:
                        self._response_format = False
                        raise BackendError("server rejected response_format; retrying without", kind="http_400",
                                           retryable=True, retry_after=0.0)
                    if "stream_options" in body and self._stream_options.refused(self.base_url, resp.status_code, detail):
                        raise BackendError("server rejected stream_options; retrying without", kind="http_400",
                                           retryable=True, retry_after=0.0)  # tokens are then counted another way
                    raise BackendError(f"HTTP {resp.status_code} from {url}: {detail}", kind=f"http_{resp.status_code}",
                                       retryable=retryable(resp.status_code),
                                       retry_after=retry_after(resp.headers.get("retry-after")))
                chat = request.messages is not None
                # a server that ignores max_tokens is cut off: no answer needs this many pieces
                max_pieces = 4 * (request.max_tokens or 4096) + 64
                async for event in iter_events(resp.aiter_bytes()):
                    if event is DONE:
                        acc.done()
                        continue
                    try:
                        chunk = parse_chunk(event, chat=chat)
                    except MalformedResponse as e:
                        raise BackendError(str(e), kind="malformed_response") from None
                    if chunk.error is not None:
                        raise BackendError(f"server error in stream: {chunk.error[:200]}", kind="stream_error",
                                           retryable=True)
                    if chunk.usage_error is not None:
                        raise BackendError(str(chunk.usage_error), kind="malformed_response")
                    for _ in range(acc.add(chunk)):
                        timings.mark_token()
                    if acc.pieces > max_pieces:
                        raise BackendError(f"the server sent {acc.pieces:,} pieces for max_tokens {request.max_tokens} "
                                           "and kept going (it ignores max_tokens?)", kind="runaway")
        except httpx.TimeoutException as e:
            raise BackendError(f"timed out talking to {url} ({type(e).__name__})", kind="timeout", retryable=True) from None
        except (httpx.TransportError, httpx.RemoteProtocolError) as e:
            raise BackendError(f"connection problem with {url}: {type(e).__name__}: {e}", kind="connection",
                               retryable=True) from None
        if not acc.ended:
            raise BackendError(f"stream from {url} ended without [DONE] or a finish_reason (truncated)",
                               kind="truncated", retryable=True)
        if acc.finish_reason is None:
            # every answer's last chunk says why it ended; llama-cpp-python's server sends [DONE] alone when
            # it drops a running answer for the next request, and that part-answer must not be scored
            raise BackendError(f"stream from {url} closed with [DONE] but no finish_reason: the answer was cut off "
                               "(a server that serves one request at a time and interrupts it for the next? set "
                               "concurrency: 1)", kind="truncated", retryable=True)
        timings.done = time.perf_counter_ns()
        usage, chunks, reasoning = acc.usage, acc.pieces, acc.reasoning
        answer, tool_calls = acc.text, calls_from_slots(acc.slots)
        if usage is not None and usage.completion_tokens is not None:
            prompt_tokens, completion_tokens, source = usage.prompt_tokens, usage.completion_tokens, "server"
        elif self.server_counter is not None:  # the server's own tokenize endpoint: the prompt as it saw it
            prompt_tokens, completion_tokens, source = await self.server_counter.prompt_tokens(request), chunks, "chunks"
        elif self.counter is not None:  # no usage: the model's own tokenizer counts what went in and came out
            out_text = answer + reasoning + acc.tool_call_text()
            prompt_tokens = await asyncio.to_thread(self.counter.prompt_tokens, request)
            completion_tokens, source = await asyncio.to_thread(self.counter.text_tokens, out_text), "tokenizer"
        else:
            prompt_tokens, completion_tokens, source = None, chunks, "chunks"
        calls_from = "server" if tool_calls else None
        if request.tools and not tool_calls:  # a server without a tool parser hands the calls over as text
            answer, tool_calls = toolcalls.from_text(answer, request.tools)
            calls_from = "text" if tool_calls else None  # recovered here; a client reading tool_calls gets none
        return Generation.from_timings(timings, text=answer, finish_reason=acc.finish_reason, prompt_tokens=prompt_tokens,
                                       completion_tokens=completion_tokens, token_source=source,
                                       reasoning=reasoning or None,
                                       raw={"usage": None if usage is None else {
                                           "prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
                                           "reasoning_tokens": usage.reasoning_tokens}, "chunks": chunks,
                                           **({"tool_calls_from": calls_from} if calls_from else {})},
                                       tool_calls=tool_calls if request.tools or tool_calls else None)
