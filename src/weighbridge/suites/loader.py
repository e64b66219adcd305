"""Load cases from YAML, JSONL or CSV into one shape (``case.py``); every error names file, line
and field. An agent case's environment is found here, relative to its suite file."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Iterator

from pydantic import ValidationError

from ..core.errors import ConfigError
from ..core.hashing import stable_hash
from ..core.inputs import MAX_DATA_BYTES, loads_json, read_text
from ..scorers import build_scorer
from ..core.yamlsource import LocatedYaml, load_yaml, validation_error
from .agent_case import resolve_environment
from . import bfcl, humaneval
from .case import Case, _missing_vars

BUILTIN_PREFIX = "builtin:"


@dataclass
class Suite:
    name: str
    path: str
    cases: list[Case] = field(default_factory=list)

    @property
    def content_hash(self) -> str:
        """Cases as written, and for agent cases the environment's code too: a changed environment
        is a changed suite (a run made with the old one is not resumed with the new)."""
        return stable_hash([c.model_dump() if c.environment_source is None else
                            {**c.model_dump(), "environment_sha256": c.environment_source.sha256} for c in self.cases])


def _case(raw: Any, *, defaults: dict[str, Any], path: str, line: int | None, src: LocatedYaml | None,
          prefix: tuple[Any, ...], presets: dict[str, dict[str, Any]] | None = None) -> Case:
    if not isinstance(raw, dict):
        raise ConfigError("a case must be a mapping", path=path, line=line)
    merged = _with_preset({**defaults, **raw}, presets or {})
    if "tags" in defaults and "tags" in raw:
        merged["tags"] = list(dict.fromkeys([*raw["tags"], *defaults["tags"]]))
    try:
        case = Case.model_validate(merged)
    except ValidationError as e:
        raise validation_error(e, src, path, prefix=prefix, base_line=line) from None
    for i, spec in enumerate(case.scorers):
        loc = prefix + ("scorers", i)
        try:
            scorer = build_scorer(spec)
        except (ValueError, ValidationError) as e:
            msg = e.errors()[0]["msg"] if isinstance(e, ValidationError) else str(e)
            raise ConfigError(msg.removeprefix("Value error, "), path=path,
                              line=src.line_of(loc) if src else line, field=".".join(map(str, loc))) from None
        if case.expected is None and getattr(scorer, "needs_expected", lambda: False)():
            kind = spec if isinstance(spec, str) else spec.get("type")
            raise ConfigError(f"scorer '{kind}' compares the answer with the case's expected value, and case "
                              f"'{case.id}' has none: add an 'expected' field (a CSV column) or give the scorer "
                              "a value:", path=path, line=src.line_of(loc) if src else line,
                              field=".".join(map(str, loc)))
    case._where = (path, line)
    if case.environment is not None:
        suite_dir = None if path.startswith(BUILTIN_PREFIX) else Path(path).parent
        try:
            case._environment = resolve_environment(case.environment, suite_dir)
        except ValueError as e:
            loc = prefix + ("environment",)
            raise ConfigError(str(e), path=path, line=src.line_of(loc) if src else line,
                              field=".".join(map(str, loc))) from None
    missing = _missing_vars(case)
    if missing:
        where = (src.line_of(prefix) if src else line)
        raise ConfigError(f"template uses {{{{{missing[0]}}}}} but the case has no such var",
                          path=path, line=where, field=".".join(map(str, prefix + ("vars",))))
    return case


def _from_yaml(path: str, text: str | None = None) -> tuple[str, list[Case]]:
    src = load_yaml(path, text)
    data = src.data
    defaults: dict[str, Any] = {}
    presets: dict[str, dict[str, Any]] = {}
    name = Path(path).stem
    prefix: tuple[Any, ...] = ()
    if isinstance(data, dict):
        unknown = set(data) - {"name", "description", "defaults", "environments", "cases"}
        if unknown:
            key = sorted(unknown)[0]
            raise ConfigError("unknown field (a suite has name, description, defaults, environments, cases)",
                              path=path, line=src.line_of((key,)), field=key)
        presets = _presets(data.get("environments"), path, src)
        name = str(data.get("name", name))
        defaults = data.get("defaults") or {}
        if not isinstance(defaults, dict):
            raise ConfigError("'defaults' must be a mapping", path=path, line=src.line_of(("defaults",)), field="defaults")
        data, prefix = data.get("cases"), ("cases",)
    if not isinstance(data, list):
        raise ConfigError("expected a list of cases (or a mapping with 'cases:')", path=path, line=1, field="cases")
    cases = [_case(raw, defaults=defaults, path=path, line=src.line_of(prefix + (i,)), src=src, prefix=prefix + (i,),
                   presets=presets) for i, raw in enumerate(data)]
    return name, cases


_PRESET_KEYS = {"environment", "initial_state", "system", "limits"}


def _presets(raw: Any, path: str, src: LocatedYaml) -> dict[str, dict[str, Any]]:
    """A suite's named environments: ``environments: {shop: {environment: shop.py, initial_state: ...}}``;
    a case that says ``environment: shop`` starts from it (its own ``initial_state`` merged over)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError("'environments' maps names to {environment, initial_state, system, limits}", path=path,
                          line=src.line_of(("environments",)), field="environments")
    for name, preset in raw.items():
        loc = ("environments", name)
        if not isinstance(preset, dict) or not isinstance(preset.get("environment"), str):
            raise ConfigError("a named environment needs 'environment:' (builtin:NAME, FILE.py or FILE.py:Class)",
                              path=path, line=src.line_of(loc), field=f"environments.{name}")
        unknown = sorted(set(preset) - _PRESET_KEYS)
        if unknown:
            raise ConfigError(f"unknown field (a named environment has {', '.join(sorted(_PRESET_KEYS))})", path=path,
                              line=src.line_of(loc + (unknown[0],)), field=f"environments.{name}.{unknown[0]}")
        if not isinstance(preset.get("initial_state", {}), dict):
            raise ConfigError("'initial_state' must be a mapping", path=path, line=src.line_of(loc + ("initial_state",)),
                              field=f"environments.{name}.initial_state")
    return raw


def _merged(base: Any, over: Any) -> Any:
    """``over`` laid on ``base``: mappings merge key by key, anything else replaces."""
    if isinstance(base, dict) and isinstance(over, dict):
        return {**base, **{k: _merged(base.get(k), v) for k, v in over.items()}}
    return over


def _with_preset(merged: dict[str, Any], presets: dict[str, dict[str, Any]]) -> dict[str, Any]:
    name = merged.get("environment")
    preset = presets.get(name) if isinstance(name, str) else None
    if preset is None:
        return merged
    out = {**{k: v for k, v in preset.items() if k != "initial_state"}, **merged, "environment": preset["environment"]}
    out["initial_state"] = _merged(preset.get("initial_state") or {}, merged.get("initial_state") or {})
    return out


def _from_jsonl(path: str) -> tuple[str, list[Case]]:
    text = read_text(path, max_bytes=MAX_DATA_BYTES, kind="JSONL")
    cases = []
    for lineno, line in enumerate(text.split("\n"), 1):  # not splitlines: U+2028 may stand inside a JSON string
        if not line.strip():
            continue
        raw = loads_json(line, where=path, line=lineno)
        cases.append(_case(raw, defaults={}, path=path, line=lineno, src=None, prefix=()))
    return Path(path).stem, cases


_CSV_FIELDS = {"id", "prompt", "system", "expected", "scorer", "scorers", "tags", "workload"}


def _csv_rows(path: str, text: str) -> Iterator[tuple[int, dict[str, str]]]:
    """(first line of the record, its fields by column); a malformed file is an error naming the line."""
    csv.field_size_limit(MAX_DATA_BYTES)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
    except csv.Error as e:
        raise ConfigError(f"malformed CSV header: {e}", path=path, line=1) from None
    if not header or "id" not in header or "prompt" not in header:
        raise ConfigError("a CSV suite needs a header row with at least 'id' and 'prompt'", path=path, line=1)
    dup = next((c for i, c in enumerate(header) if c in header[:i]), None)
    if dup is not None:
        raise ConfigError(f"duplicate column '{dup}' in the header", path=path, line=1, field=dup)
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            if "end of data" in str(e) or "EOF" in str(e):
                raise ConfigError("unterminated quoted field: the quote opened in the record that starts here "
                                  "is never closed", path=path, line=start) from None
            raise ConfigError(f"malformed CSV: {e}", path=path, line=reader.line_num) from None
        if not any(cell.strip() for cell in row):
            continue
        if len(row) > len(header):
            raise ConfigError(f"{len(row)} fields but the header has {len(header)} columns", path=path, line=start)
        yield start, dict(zip(header, row + [""] * (len(header) - len(row))))


def _from_csv(path: str) -> tuple[str, list[Case]]:
    """Columns: id, prompt, expected, optional system/scorer(s)/tags/workload; others become vars."""
    text = read_text(path, max_bytes=MAX_DATA_BYTES, kind="CSV")
    cases = []
    for lineno, row in _csv_rows(path, text):
        raw: dict[str, Any] = {k: v for k, v in row.items() if k in _CSV_FIELDS and v != ""}
        raw["vars"] = {k: v for k, v in row.items() if k not in _CSV_FIELDS}
        for key in [k for k in ("scorer", "scorers") if k in raw]:
            value = raw.pop(key)
            parsed = loads_json(value, where=path, line=lineno, field=key) if value.lstrip().startswith(("{", "[")) else value
            raw["scorers"] = parsed if isinstance(parsed, list) else [parsed]
        if "tags" in raw:
            raw["tags"] = [t.strip() for t in re.split(r"[;,]", raw["tags"]) if t.strip()]
        cases.append(_case(raw, defaults={}, path=path, line=lineno, src=None, prefix=()))
    return Path(path).stem, cases


def builtin_suites() -> list[str]:
    """The built-in suites: the YAML files, and the generated long-context one."""
    folder = resources.files("weighbridge.suites") / "builtin"
    return sorted([p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml")] + ["long-context"])


_SLICE = re.compile(r"^(?P<ref>.+?)\[(?P<start>-?\d*):(?P<stop>-?\d*)(?::(?P<step>-?\d*))?\]$")


def load_suite(ref: str | Path, base_dir: str | Path = ".") -> Suite:
    """``builtin:NAME`` or a path (relative to ``base_dir``) ending in .yaml/.yml/.jsonl/.csv, optionally
    followed by a Python slice of its cases: ``builtin:tools[::4]`` (every fourth), ``cases.csv[:20]``."""
    ref = str(ref)
    sliced = _SLICE.match(ref)
    if sliced:
        parts = [int(sliced.group(k)) if sliced.group(k) else None for k in ("start", "stop", "step")]
        if parts[2] == 0:
            raise ConfigError(f"suite slice {ref!r}: the step cannot be 0", field="suites")
        whole = load_suite(sliced.group("ref"), base_dir)
        cases = whole.cases[slice(*parts)]
        if not cases:
            raise ConfigError(f"suite slice {ref!r} selects no case (the suite has {len(whole.cases)})", field="suites")
        return Suite(name=f"{whole.name}{ref[sliced.end('ref'):]}", path=ref, cases=cases)
    if ref.startswith(BUILTIN_PREFIX + "long-context"):
        return _long_context(ref)
    if ref.startswith(bfcl.PREFIX):
        return _generated(ref, ref, bfcl.cases(ref[len(bfcl.PREFIX):]))
    if ref.startswith(humaneval.PREFIX):
        if ref != humaneval.PREFIX:
            raise ConfigError(f"{ref!r}: humaneval: takes no name; select problems with a slice, humaneval:[:20]",
                              field="suites")
        return _generated("humaneval", ref, humaneval.cases())
    if ref.startswith(BUILTIN_PREFIX):
        name = ref[len(BUILTIN_PREFIX):]
        res = resources.files("weighbridge.suites") / "builtin" / f"{name}.yaml"
        if not res.is_file():
            raise ConfigError(f"no built-in suite '{name}' (available: {', '.join(builtin_suites())})", field="suites")
        suite_name, cases = _from_yaml(f"builtin:{name}", res.read_text(encoding="utf-8"))
        path = ref
    else:
        p = Path(ref).expanduser()
        if not p.is_absolute():
            p = Path(base_dir) / p
        path = str(p)
        if p.is_dir():
            raise ConfigError("is a directory, not a suite file (.yaml, .jsonl or .csv)", path=path, field="suites")
        if not p.is_file():
            raise ConfigError("suite file not found", path=path, field="suites")
        loaders = {".yaml": _from_yaml, ".yml": _from_yaml, ".jsonl": _from_jsonl, ".csv": _from_csv}
        loader = loaders.get(p.suffix.lower())
        if loader is None:
            raise ConfigError("unknown suite format (use .yaml, .jsonl or .csv)", path=path)
        suite_name, cases = loader(path)
    seen: dict[str, int] = {}
    for i, c in enumerate(cases):
        if c.id in seen:
            raise ConfigError(f"duplicate case id '{c.id}' (cases {seen[c.id]} and {i})", path=path, field="id")
        seen[c.id] = i
    if not cases:
        raise ConfigError("the suite has no cases", path=path)
    return Suite(name=suite_name, path=path, cases=cases)


def _long_context(ref: str) -> Suite:
    """The generated suite (suites/longcontext.py); its options come after a '?'."""
    from .longcontext import generate, parse_options

    head, _, query = ref.partition("?")
    if head != BUILTIN_PREFIX + "long-context":
        raise ConfigError(f"no built-in suite '{head[len(BUILTIN_PREFIX):]}' (available: {', '.join(builtin_suites())})",
                          field="suites")
    try:
        opts = parse_options(query)
    except ValueError as e:
        raise ConfigError(f"{ref}: {e}", field="suites") from None
    return _generated("long-context", ref, generate(opts))


def _generated(name: str, ref: str, raws: list[dict[str, Any]]) -> Suite:
    """A suite built in code (long context, the public benchmarks): each case checked as a file's is."""
    return Suite(name=name, path=ref, cases=[_case(raw, defaults={}, path=ref, line=None, src=None, prefix=(i,))
                                             for i, raw in enumerate(raws)])


def load_suites(refs: list[str], base_dir: str | Path = ".") -> list[Suite]:
    suites = [load_suite(r, base_dir) for r in refs]
    owner: dict[str, str] = {}
    for s in suites:
        for c in s.cases:
            if c.id in owner:
                raise ConfigError(f"case id '{c.id}' appears in both {owner[c.id]} and {s.path}; ids must be unique in a run",
                                  path=s.path, field="id")
            owner[c.id] = s.path
    return suites
