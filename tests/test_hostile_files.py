"""Attack tests, issue 22 item 6: a hostile model file never hangs, crashes or outlives a command.
GGUF headers are written byte by byte (a real library would refuse to write them); the template
attacks run the real llama.cpp engine on a copy of the bundled SmolLM2 whose chat template was
replaced."""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from weighbridge.backends.chat_template import TemplateError, TemplateRenderer

from .conftest import write


def _gguf(kvs: bytes, n_kv: int) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", 3, 0, n_kv) + kvs


def _key(name: str) -> bytes:
    return struct.pack("<Q", len(name)) + name.encode()


HUGE_ARRAY = _gguf(_key("tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, 2 ** 63), 1)  # 2^63 strings
DEEP = _gguf(_key("x") + struct.pack("<I", 9) + struct.pack("<IQ", 9, 1) * 5000 + struct.pack("<IQ", 4, 0), 1)
LONG_KEY = _gguf(struct.pack("<Q", 2 ** 40) + b"k" * 64, 1)
MANY_KEYS = _gguf(b"", 2 ** 62)


def _wb(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "weighbridge", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "COLUMNS": "200"})


@pytest.mark.parametrize("name,data,says", [
    ("huge_array", HUGE_ARRAY, "an array of 9,223,372,036,854,775,808 items"),
    ("deep", DEEP, "arrays nested deeper than 4"),
    ("long_key", LONG_KEY, "a string of 1,099,511,627,776 bytes"),
    ("many_keys", MANY_KEYS, "4,611,686,018,427,387,904 metadata entries")])
def test_a_hostile_gguf_header_is_a_clear_error_naming_the_offset(tmp_path, name, data, says):
    path = tmp_path / f"{name}.gguf"
    path.write_bytes(data)
    assert len(HUGE_ARRAY) == 69
    t = time.monotonic()
    r = _wb("license", "check", str(path), cwd=tmp_path)
    write(tmp_path / "weighbridge.yaml", f"models:\n  - {{name: bad, backend: llamacpp, path: {path}}}\n"
                                         "suites: ['builtin:starter[:1]']\n")
    b = _wb("bakeoff", cwd=tmp_path)
    q = _wb("quantize", str(path), "--to", "Q4_0", cwd=tmp_path)
    assert time.monotonic() - t < 30
    for result in (r, b, q):
        out = " ".join((result.stdout + result.stderr).split())  # tables fold long lines
        assert says in out and "at byte" in out, out
        assert "Traceback" not in out
    assert r.returncode == 0 and "needs review" in r.stdout  # the license of a file nobody can read
    assert b.returncode == 2 and q.returncode == 2


def _with_template(src: Path, dst: Path, template: str) -> Path:
    """A copy of a GGUF with another chat template: the value swapped in the header, the padding
    before the tensor data redone (tensor offsets are relative to the data, so they stay right)."""
    data = src.read_bytes()
    pos = 24
    n_tensors, n_kv = struct.unpack_from("<QQ", data, 8)
    span = None
    alignment = 32

    def string(p: int) -> tuple[bytes, int]:
        n = struct.unpack_from("<Q", data, p)[0]
        return data[p + 8:p + 8 + n], p + 8 + n

    sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}

    def skip(p: int, t: int) -> int:
        if t in sizes:
            return p + sizes[t]
        if t == 8:
            return string(p)[1]
        itype, count = struct.unpack_from("<IQ", data, p)
        p += 12
        for _ in range(count):
            p = skip(p, itype)
        return p

    for _ in range(n_kv):
        key, pos = string(pos)
        vtype = struct.unpack_from("<I", data, pos)[0]
        start = pos + 4
        pos = skip(start, vtype)
        if key == b"tokenizer.chat_template":
            span = (start, pos)
        if key == b"general.alignment":
            alignment = struct.unpack_from("<I", data, start)[0]
    for _ in range(n_tensors):
        _, pos = string(pos)
        n_dims = struct.unpack_from("<I", data, pos)[0]
        pos += 4 + 8 * n_dims + 4 + 8
    data_start = -(-pos // alignment) * alignment
    assert span is not None
    t = template.encode()
    head = data[:span[0]] + struct.pack("<Q", len(t)) + t + data[span[1]:pos]
    dst.write_bytes(head + b"\0" * (-len(head) % alignment) + data[data_start:])
    return dst


LOOPS = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"


def test_a_looping_chat_template_fails_its_jobs_in_time_and_sigterm_still_stops_the_run(tmp_path, smollm_path):
    model = _with_template(smollm_path, tmp_path / "loops.gguf", LOOPS)
    write(tmp_path / "weighbridge.yaml", textwrap.dedent(f"""\
        models:
          - {{name: loops, backend: llamacpp, path: {model}, n_threads: 2, template_timeout_s: 2,
             params: {{max_tokens: 4}}}}
        suites: ['builtin:starter[:2]']
        max_error_rate: 1.0
        """))
    t = time.monotonic()
    r = _wb("bakeoff", cwd=tmp_path, timeout=120)
    took = time.monotonic() - t
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stdout + r.stderr
    assert "template" in r.stdout and took < 60
    import sqlite3

    errors = [e for (e,) in sqlite3.connect(tmp_path / "weighbridge.db").execute("SELECT error FROM generations")]
    assert len(errors) == 2 and all(e.startswith("template: ") and "longer than 2 s" in e for e in errors), errors
    # SIGTERM while a template loops: the command stops within the template's bound, leaving no process behind
    def renderers() -> set[str]:
        found = subprocess.run(["pgrep", "-f", "weighbridge.backends.chat_template"], capture_output=True, text=True)
        return set(found.stdout.split())

    before = renderers()  # this test process's own backends may hold some
    proc = subprocess.Popen([sys.executable, "-m", "weighbridge", "bakeoff", "--no-cache"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(6)
    t = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    assert time.monotonic() - t < 10
    time.sleep(0.5)
    assert renderers() <= before


def test_a_chat_template_that_does_not_compile_is_refused_before_the_run(tmp_path, smollm_path):
    model = _with_template(smollm_path, tmp_path / "broken.gguf", "{% for m in messages %}{{ m.content ")
    write(tmp_path / "weighbridge.yaml", f"models:\n  - {{name: broken, backend: llamacpp, path: {model}}}\n"
                                         "suites: ['builtin:starter[:1]']\n")
    r = _wb("bakeoff", cwd=tmp_path)
    assert r.returncode == 2 and "broken" in r.stderr and "does not compile" in r.stderr, r.stdout + r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("template,says", [
    ("{{ raise_exception('no system messages, please') }}", "no system messages, please"),
    ("{{ 'x' * 4000000000 }}", "memory"),
    ("{% for i in range(100000) %}{{ 'y' * 1000 }}{% endfor %}", "more than 1,000,000 characters"),
    (LOOPS, "longer than 1 s"),
])
def test_the_renderer_bounds_time_memory_and_output_and_reports_a_templates_own_error(template, says):
    r = TemplateRenderer(template, "<s>", "</s>", timeout_s=1, max_bytes=1_000_000, memory_mb=512)
    try:
        with pytest.raises(TemplateError, match=says):
            r(messages=[{"role": "user", "content": "hi"}])
        ok = TemplateRenderer("{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}", "<s>", "</s>")
        assert ok(messages=[{"role": "user", "content": "hi"}]).prompt == "<s>hi"
        ok.close()
    finally:
        r.close()


def test_the_renderer_renders_exactly_as_llama_cpp_python_does(smollm_path):
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    from weighbridge.core.gguf import read_metadata

    tmpl = read_metadata(smollm_path)["tokenizer.chat_template"]
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi <b>&</b> ünï"},
            {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Again"}]
    ours = TemplateRenderer(tmpl, "<|im_start|>", "<|im_end|>")
    try:
        theirs = Jinja2ChatFormatter(template=tmpl, eos_token="<|im_end|>", bos_token="<|im_start|>")
        assert ours(messages=msgs).prompt == theirs(messages=msgs).prompt
    finally:
        ours.close()
