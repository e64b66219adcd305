"""``weighbridge quantize``: write lower-precision variants of a GGUF with llama.cpp's own quantiser
(``llama_model_quantize``, exposed by llama-cpp-python), each with its provenance.

Each variant is written to a temporary name and renamed when complete (an interrupted run leaves no
half file under the real name), and beside it ``<variant>.gguf.quant.json`` records where it came
from: the source file's sha256, the target type, the quantiser's settings, llama.cpp's version, and
how many tensors llama.cpp had to quantise to a fallback type (K-quants need rows that are multiples
of 256; a small model's 576-wide tensors fall back to Q4_0/Q5_0, so a "Q2_K" of it is mostly not
Q2_K). ``weighbridge lock`` copies that record into the lock entry of a model whose file it is.

Re-quantising a file that is already quantised needs ``allow_requantize``: its weights are already
rounded, so rounding them again can only lose more; the quality of a variant made that way is a
lower bound of what a quantisation of the original weights would give. Start from an F16/BF16 GGUF
where you have one.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import json
import os
import re
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

from ..core.errors import WeighbridgeError
from ..core.files import write_atomic
from ..core.gguf import GGUFError, read_metadata
from ..core.hashing import sha256_file

# general.file_type values of unquantised GGUFs (llama.cpp's llama_ftype)
_FULL_PRECISION = {0: "F32", 1: "F16", 32: "BF16"}
_FALLBACK = re.compile(r"(\d+) of (\d+) tensor\(s\) required fallback quantization")
SIDECAR = ".quant.json"


class QuantizeError(WeighbridgeError):
    pass


@dataclass
class Variant:
    type: str
    path: str
    sha256: str
    size: int
    seconds: float
    source: str
    source_sha256: str
    source_file_type: int | None
    allow_requantize: bool
    threads: int
    fallback_tensors: int | None
    total_tensors: int | None
    llama_cpp: str

    def record(self) -> dict[str, Any]:
        return asdict(self)


def known_types() -> dict[str, int]:
    import llama_cpp

    prefix = "LLAMA_FTYPE_MOSTLY_"
    return {n[len(prefix):]: getattr(llama_cpp, n) for n in dir(llama_cpp) if n.startswith(prefix)}


def parse_types(text: str) -> list[str]:
    types = [t.strip().upper() for t in text.split(",") if t.strip()]
    known = known_types()
    bad = [t for t in types if t not in known]
    if bad or not types:
        raise QuantizeError(f"unknown quantisation type(s) {', '.join(bad) or '(none given)'}; "
                            f"known: {', '.join(sorted(known))}")
    return types


@contextlib.contextmanager
def _capture_fd2() -> Iterator[list[str]]:
    """llama.cpp's quantiser reports per tensor through its log callback, which llama-cpp-python
    points at Python's ``sys.stderr``, and some lines go straight to fd 2: keep both out of the
    terminal and hand the text back, for the fallback count."""
    out: list[str] = []
    saved = os.dup(2)
    py_err = sys.stderr
    buffer = io.StringIO()
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        sys.stderr = buffer
        try:
            yield out
        finally:
            sys.stderr = py_err
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            out.append(tmp.read().decode("utf-8", "replace") + buffer.getvalue())


def quantize(source: Path, types: list[str], out_dir: Path, *, threads: int | None = None,
             allow_requantize: bool = False, stem: str | None = None) -> list[Variant]:
    """One variant per type, written atomically under ``out_dir`` with its provenance sidecar."""
    import llama_cpp

    try:
        meta = read_metadata(source)
    except (GGUFError, OSError) as e:
        raise QuantizeError(f"{source}: not a GGUF file llama.cpp can quantise ({e})") from None
    ftype = meta.get("general.file_type")
    if ftype not in _FULL_PRECISION and not allow_requantize:
        raise QuantizeError(
            f"{source} is already quantised (general.file_type {ftype}): re-quantising rounds weights that are "
            "already rounded, so quality can only go down, and the variants measure less than a quantisation of "
            "the original weights would. Pass --allow-requantize to do it anyway, or start from an F16/BF16 GGUF")
    known = known_types()
    source_sha = sha256_file(source)
    out_dir.mkdir(parents=True, exist_ok=True)
    base = stem or source.name.removesuffix(".gguf").split(".")[0]
    from ..core.contention import usable_cpus

    n = threads or usable_cpus()
    variants = []
    for t in types:
        target = out_dir / f"{base}.{t}.gguf"
        tmp = target.with_name(f".{target.name}.{os.getpid()}.partial")
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = known[t]
        params.nthread = n
        params.allow_requantize = allow_requantize
        t0 = time.perf_counter()
        try:
            with _capture_fd2() as log:
                rc = llama_cpp.llama_model_quantize(str(source).encode(), str(tmp).encode(), ctypes.byref(params))
            if rc != 0 or not tmp.exists():
                tail = (log[0] if log else "").strip().splitlines()[-3:]
                raise QuantizeError(f"llama.cpp could not quantise {source} to {t} (code {rc}): {' | '.join(tail)}")
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        seconds = time.perf_counter() - t0
        fb = _FALLBACK.search(log[0] if log else "")
        variant = Variant(type=t, path=str(target), sha256=sha256_file(target), size=target.stat().st_size,
                          seconds=round(seconds, 3), source=str(source), source_sha256=source_sha,
                          source_file_type=ftype, allow_requantize=allow_requantize, threads=n,
                          fallback_tensors=int(fb.group(1)) if fb else 0, total_tensors=int(fb.group(2)) if fb else None,
                          llama_cpp=llama_cpp.__version__)
        write_atomic(Path(str(target) + SIDECAR), json.dumps(variant.record(), indent=2) + "\n")
        variants.append(variant)
    return variants


def provenance(path: Path) -> dict[str, Any] | None:
    """The sidecar record of a variant this command wrote, if there is one (the caller compares its
    sha256 with the file's before trusting it)."""
    side = Path(str(path) + SIDECAR)
    if not side.exists():
        return None
    try:
        record = json.loads(side.read_text())
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def config_snippet(variants: list[Variant], name: str, base_dir: Path, source: dict[str, str],
                   source_type: str) -> str:
    """The entry to put in weighbridge.yaml: the source as the reference variant, then each new one
    (paths relative to the config)."""
    where = ", ".join(f"{k}: {v}" for k, v in source.items())
    lines = ["models:", f"  - name: {name}", "    backend: llamacpp", "    variants:",
             f"      - {{name: {source_type}, reference: true, {where}}}"]
    for v in variants:
        try:
            rel = os.path.relpath(v.path, base_dir)
        except ValueError:
            rel = v.path
        lines.append(f"      - {{name: {v.type}, path: {rel}}}")
    return "\n".join(lines)


def type_name(file_type: int | None) -> str | None:
    """llama.cpp's name for a GGUF's general.file_type (Q4_1, F16, …)."""
    if file_type is None:
        return None
    return {v: k for k, v in known_types().items()}.get(file_type) or _FULL_PRECISION.get(file_type)


def _flow(m: Any) -> Any:
    m.fa.set_flow_style()  # one line per variant: `- {name: Q2_K, path: …}`
    return m


def add_to_config(config_path: Path, model: str, source: dict[str, str], source_type: str,
                  variants: list[Variant]) -> list[str]:
    """Add the variants to ``model``'s entry of the config, keeping the file's comments and layout
    (ruamel.yaml round-trip) and writing it atomically. An entry without variants becomes one whose
    first variant is the source file, the reference; an entry that is not there is added. Returns
    what changed, in words."""
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap
    from ruamel.yaml.util import load_yaml_guess_indent

    text = config_path.read_text(encoding="utf-8")
    _, indent, offset = load_yaml_guess_indent(text)
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096
    sequence, offset = indent or 2, offset or 0  # ruamel's guess: a sequence's indent, and its dash's offset
    yaml.indent(mapping=sequence - offset if sequence > offset else 2, sequence=sequence, offset=offset)
    doc = yaml.load(text)
    models = doc.get("models")
    entry = next((m for m in models if isinstance(m, dict) and m.get("name") == model), None)
    said = []
    base = config_path.resolve().parent
    rel = {v.type: os.path.relpath(Path(v.path).resolve(), base) for v in variants}
    if entry is None:
        entry = CommentedMap(name=model, backend="llamacpp")
        entry["variants"] = [_flow(CommentedMap(name=source_type, reference=True, **source))]
        models.append(entry)
        said.append(f"added model '{model}' with the source {source_type} as its reference variant")
    elif not entry.get("variants"):
        where = {k: entry.pop(k) for k in ("bundled", "path") if k in entry}
        entry["variants"] = [_flow(CommentedMap(name=source_type, reference=True, **where))]
        said.append(f"'{model}' now lists variants, the source {source_type} first as the reference: its runs are "
                    f"named {model}@<variant> from now on")
    existing = entry["variants"]
    for v in variants:
        row = next((x for x in existing if x.get("name") == v.type), None)
        if row is None:
            existing.append(_flow(CommentedMap(name=v.type, path=rel[v.type])))
            said.append(f"added variant {v.type} ({rel[v.type]})")
        else:
            row["path"] = rel[v.type]
            said.append(f"variant {v.type} now points at {rel[v.type]}")
    out = io.StringIO()
    yaml.dump(doc, out)
    write_atomic(config_path, out.getvalue())
    return said
