"""A GGUF's chat template, rendered where a deadline can stop it.

The template comes from the model file, which may be hostile: Jinja's sandbox stops it from
reaching Python, but not from looping 100,000 × 100,000 times, building a string of gigabytes or
raising. llama-cpp-python renders it on the calling thread, where nothing can interrupt it (the
llama.cpp thread ignored SIGTERM for as long as it ran). So a template is rendered here, in a child
process that holds its own memory limit (``RLIMIT_AS``): the parent waits for each answer until a
deadline, then kills the child and the job gets an error; output past ``max_bytes`` is refused.
The environment is the one llama-cpp-python (and Transformers) render with - an immutable sandbox,
``trim_blocks``/``lstrip_blocks``, ``loopcontrols``, the ``{% generation %}`` tag ignored, ``tojson``
without ASCII escaping, ``raise_exception`` and ``strftime_now`` - so prompts are byte-identical.

Not under bubblewrap: the embedded default must run where only ``pip install`` ran. What the
template can do is what Jinja's immutable sandbox allows, bounded in time and memory; it never
receives a secret.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

from ..core.errors import WeighbridgeError
from ..core.procs import die_with_parent

TIMEOUT_S = 10.0
MAX_BYTES = 16 << 20  # the rendered prompt; no context window holds more
MEMORY_MB = 1024


class TemplateError(WeighbridgeError):
    """The chat template does not compile, raised, ran too long or produced too much."""


@dataclass
class Formatted:
    prompt: str
    stop: list[str]
    added_special: bool = True


class TemplateRenderer:
    """One child process per template, started on first use and restarted after a kill."""

    def __init__(self, template: str, bos_token: str, eos_token: str, *, timeout_s: float = TIMEOUT_S,
                 max_bytes: int = MAX_BYTES, memory_mb: int = MEMORY_MB) -> None:
        self.template, self.bos, self.eos = template, bos_token, eos_token
        self.timeout_s, self.max_bytes, self.memory_mb = timeout_s, max_bytes, memory_mb
        self._proc: subprocess.Popen[bytes] | None = None
        self._buf = b""

    def check(self) -> None:
        """Start the child and compile the template: a syntax error is the model's, before any job."""
        self._ensure()

    def __call__(self, *, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None,
                 tool_choice: Any = None, enable_thinking: bool | None = None) -> Formatted:
        """``enable_thinking``: the variable reasoning models' templates read (Qwen3's) - passed only when set."""
        self._ensure()
        ask: dict[str, Any] = {"messages": messages, "tools": tools, "tool_choice": tool_choice}
        if enable_thinking is not None:
            ask["enable_thinking"] = bool(enable_thinking)
        reply = self._ask(ask)
        if "error" in reply:
            raise TemplateError(f"the chat template failed: {reply['error']}")
        return Formatted(prompt=reply["prompt"], stop=[self.eos])

    def close(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            for f in (self._proc.stdin, self._proc.stdout):
                if f is not None:
                    f.close()
            self._proc = None
            self._buf = b""

    # -- the pipe ------------------------------------------------------------------------------
    def _ensure(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            return
        self.close()
        self._proc = subprocess.Popen([sys.executable, "-m", "weighbridge.backends.chat_template"],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                      preexec_fn=die_with_parent,  # never outlives weighbridge, even mid-loop
                                      env={k: v for k, v in os.environ.items() if k in ("PATH", "PYTHONPATH")})
        reply = self._ask({"template": self.template, "bos_token": self.bos, "eos_token": self.eos,
                           "max_bytes": self.max_bytes, "memory_mb": self.memory_mb})
        if "error" in reply:
            self.close()
            raise TemplateError(f"the chat template does not compile: {reply['error']}")

    def _ask(self, message: dict[str, Any]) -> dict[str, Any]:
        proc = self._proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(json.dumps(message, ensure_ascii=False).encode() + b"\n")
            proc.stdin.flush()
        except BrokenPipeError:
            self.close()
            raise TemplateError("the chat template's renderer died") from None
        deadline = time.monotonic() + self.timeout_s
        fd = proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                self.close()
                raise TemplateError(f"the chat template took longer than {self.timeout_s:g} s to render "
                                    "(a loop a real template would not have?)")
            data = os.read(fd, 1 << 20)
            if not data:
                self.close()
                raise TemplateError("the chat template's renderer died (out of memory?)")
            self._buf += data
            if len(self._buf) > 2 * self.max_bytes + 4096:  # escaped JSON of a prompt at the bound
                self.close()
                raise TemplateError(f"the chat template produced more than {self.max_bytes:,} bytes")
        line, _, self._buf = self._buf.partition(b"\n")
        reply: dict[str, Any] = json.loads(line)
        return reply


def compile_template(template: str) -> None:
    """Parse the template here (parsing is linear in its length; only rendering runs it): a syntax
    error is a clear error before a run starts."""
    try:
        _environment(template)
    except RecursionError:
        raise TemplateError("the chat template does not compile: nested too deeply") from None
    except Exception as e:  # noqa: BLE001 - Jinja's errors, whatever their class
        raise TemplateError(f"the chat template does not compile: {type(e).__name__}: {str(e)[:300]}") from None


# -- the child --------------------------------------------------------------------------------
def _environment(template: str) -> Any:
    import datetime

    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class IgnoreGenerationTags(jinja2.ext.Extension):
        tags = {"generation"}

        def parse(self, parser: Any) -> Any:
            parser.stream.skip(1)
            return parser.parse_statements(("name:endgeneration",), drop_needle=True)

    env = ImmutableSandboxedEnvironment(loader=jinja2.BaseLoader(), trim_blocks=True, lstrip_blocks=True,
                                        extensions=[IgnoreGenerationTags, jinja2.ext.loopcontrols])
    env.filters["tojson"] = lambda x, ensure_ascii=False, indent=None, separators=None, sort_keys=False: json.dumps(
        x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)
    env.globals["strftime_now"] = lambda f: datetime.datetime.now().strftime(f)
    return env.from_string(template)


def _raise_exception(message: str) -> None:
    raise ValueError(message)


def _child() -> None:
    import resource

    out = sys.stdout.buffer
    setup = json.loads(sys.stdin.buffer.readline())
    limit = int(setup["memory_mb"]) << 20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    max_bytes = int(setup["max_bytes"])
    try:
        tmpl = _environment(setup["template"])
        out.write(b'{"ok": true}\n')
    except Exception as e:  # noqa: BLE001 - told to the parent, which names the model
        out.write(json.dumps({"error": f"{type(e).__name__}: {e}"[:500]}).encode() + b"\n")
        out.flush()
        return
    out.flush()
    for line in sys.stdin.buffer:
        req = json.loads(line)
        try:
            parts, size = [], 0
            switches = {"enable_thinking": req["enable_thinking"]} if isinstance(req.get("enable_thinking"), bool) else {}
            for piece in tmpl.generate(messages=req["messages"], tools=req["tools"], tool_choice=req["tool_choice"],
                                       functions=None, function_call=None, add_generation_prompt=True,
                                       bos_token=setup["bos_token"], eos_token=setup["eos_token"],
                                       raise_exception=_raise_exception, **switches):
                size += len(piece)
                if size > max_bytes:
                    raise ValueError(f"it produced more than {max_bytes:,} characters")
                parts.append(piece)
            reply: dict[str, Any] = {"prompt": "".join(parts)}
        except MemoryError:
            reply = {"error": "it ran out of its memory limit"}
        except Exception as e:  # noqa: BLE001 - a template's own error is that job's
            reply = {"error": f"{type(e).__name__}: {e}"[:500]}
        out.write(json.dumps(reply, ensure_ascii=False).encode() + b"\n")
        out.flush()


if __name__ == "__main__":
    _child()


def render_completion_prompt(template: str, messages: list[dict[str, str]]) -> str:
    """Completion mode: fill ``{system}`` and ``{user}`` (str.replace, so braces in cases are safe)."""
    system = "\n".join(m.get("content") or "" for m in messages if m["role"] == "system")
    user = "\n\n".join(m.get("content") or "" for m in messages if m["role"] != "system")
    return template.replace("{system}", system + "\n\n" if system else "").replace("{user}", user)


def template_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages as chat templates expect them: tool-call arguments as objects (Qwen's and Llama's
    templates ``tojson`` them), content never missing."""
    out = []
    for m in messages:
        m = dict(m)
        if m.get("content") is None:
            m["content"] = ""
        if m.get("tool_calls"):
            calls = []
            for c in m["tool_calls"]:
                fn = dict(c.get("function") or {})
                if isinstance(fn.get("arguments"), str):
                    try:
                        fn["arguments"] = json.loads(fn["arguments"])
                    except ValueError:
                        pass
                calls.append({**c, "function": fn, **fn})  # some templates read tool_call.name directly
            m["tool_calls"] = calls
        out.append(m)
    return out
