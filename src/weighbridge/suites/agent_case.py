"""What an agent case declares beyond a prompt: the environment whose methods are its tools, the
state it starts in, the scripted user turns, the gold calls of each turn and the episode's limits.

An environment is named three ways: ``builtin:NAME`` (``suites/environments/NAME.py``), a file
beside the suite (``shop.py`` or ``envs/shop.py:Shop``), or a plugin's ``weighbridge.environments``
entry point (``plugin:NAME``). Its source is read here as text and never imported by weighbridge:
it runs only in the sandbox (``eval/agent/sandboxed.py``). Without ``:Class`` the module must define
exactly one class, found by parsing it.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import importlib.util
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..core.inputs import read_text
from ..core.plugins import registered

ENVIRONMENTS = "weighbridge.environments"
MAX_SOURCE = 1 << 20


class GoldCall(BaseModel):
    """One reference call: a tool's name and its arguments; ``fails: true`` for a call the environment
    is meant to refuse (a tool that fails once and must be called again)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    arguments: dict[str, Any] = Field(default_factory=dict)
    fails: bool = False


class AgentLimits(BaseModel):
    """When an episode stops whatever the model does (BFCL stops a turn at 20 steps): a case's
    ``limits:``, and what the loop itself reads."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    steps_per_turn: int = Field(20, ge=1, le=200)
    steps_per_episode: int = Field(60, ge=1, le=1000)
    tool_errors: int = Field(10, ge=1, le=1000)
    tokens: int = Field(32_000, ge=1, le=10_000_000)
    wall_s: float = Field(300.0, gt=0, le=86_400)
    call_timeout_s: float = Field(10.0, gt=0, le=600)
    cut_off_ends_episode: bool = True  # false: a reply cut at max_tokens ends only its turn (as BFCL runs)


@dataclass(frozen=True)
class EnvironmentSource:
    """An environment's code as the sandbox receives it, and the installed packages it imports
    (its module's ``LIBRARIES = [...]``: name -> directory, bound read-only into the sandbox)."""

    ref: str
    source: str
    class_name: str
    filename: str
    libraries: tuple[tuple[str, str, str], ...] = ()  # (import name, directory, version)

    @property
    def sha256(self) -> str:
        libs = "".join(f"\0{name}={version}" for name, _, version in self.libraries)
        return hashlib.sha256(f"{self.class_name}\0{self.source}{libs}".encode()).hexdigest()

    @property
    def library_dirs(self) -> dict[str, str]:
        return {name: where for name, where, _ in self.libraries}


def builtin_environments() -> list[str]:
    folder = resources.files("weighbridge.suites") / "environments"
    return sorted(p.name[:-3] for p in folder.iterdir() if p.name.endswith(".py") and not p.name.startswith("_"))


def _parts(ref: str) -> tuple[str, str, str]:
    """``(scheme, module, class)`` of ``builtin:NAME[:Class]``, ``plugin:NAME[:Class]`` or ``FILE.py[:Class]``."""
    ref = ref.strip()
    scheme = next((s for s in ("builtin:", "plugin:") if ref.startswith(s)), "")
    target, _, class_name = ref[len(scheme):].partition(":")
    return scheme, target, class_name


def environment_label(ref: str) -> str:
    """A short name for reports: ``orders`` for builtin:orders, ``shop`` for envs/shop.py:Shop."""
    return Path(_parts(ref)[1]).stem


def resolve_environment(ref: str, suite_dir: Path | None) -> EnvironmentSource:
    """The environment's source and class; ValueError says what is wrong (the loader adds file and line)."""
    scheme, target, class_name = _parts(ref)
    module_ref = scheme + target
    if module_ref.startswith("builtin:"):
        name = module_ref[len("builtin:"):]
        if name not in builtin_environments():
            raise ValueError(f"no built-in environment '{name}' (available: {', '.join(builtin_environments())})")
        source = (resources.files("weighbridge.suites") / "environments" / f"{name}.py").read_text(encoding="utf-8")
        filename = f"{name}.py"
    elif module_ref.startswith("plugin:"):
        source, filename, class_name = _plugin(module_ref[len("plugin:"):], class_name)
    else:
        if suite_dir is None:
            raise ValueError("an environment file is found beside its suite file; this suite has none")
        path = (suite_dir / module_ref).resolve()
        if path.suffix != ".py":
            raise ValueError(f"an environment is a Python file (FILE.py or FILE.py:Class), not {module_ref!r}")
        if not path.is_file():
            raise ValueError(f"environment file not found: {path}")
        source = read_text(str(path), max_bytes=MAX_SOURCE, kind="environment")
        filename = path.name
    try:  # parsed once, never run here: it names its class and its libraries
        tree = ast.parse(source, filename)
    except SyntaxError as e:
        raise ValueError(f"{filename} line {e.lineno}: {e.msg}") from None
    except (RecursionError, MemoryError):  # nested past what the parser follows: not an environment either
        raise ValueError(f"{filename}: nested too deeply to read") from None
    return EnvironmentSource(ref, source, class_name or _only_class(tree, filename), filename,
                             tuple(installed_library(name, filename) for name in _libraries(tree, filename)))


def _libraries(tree: ast.Module, filename: str) -> list[str]:
    """The module's ``LIBRARIES = ["name", ...]``."""
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "LIBRARIES" for t in node.targets):
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                value = None
            if not isinstance(value, list) or not all(isinstance(v, str) and v.isidentifier() for v in value):
                raise ValueError(f"{filename} line {node.lineno}: LIBRARIES is a list of importable package names, "
                                 "written out")
            return list(value)
    return []


def installed_library(name: str, filename: str) -> tuple[str, str, str]:
    """An installed package's directory (found, not imported) and version."""
    spec = importlib.util.find_spec(name)
    places = list(spec.submodule_search_locations or []) if spec is not None else []
    if not places:
        raise ValueError(f"{filename} needs the installed package '{name}' (pip install it; a package "
                         "directory, not a single module)")
    try:
        version = importlib.metadata.version(name.replace("_", "-"))
    except importlib.metadata.PackageNotFoundError:
        version = "?"
    return name, places[0], version


def _plugin(name: str, class_name: str) -> tuple[str, str, str]:
    eps = registered(ENVIRONMENTS)
    if name not in eps:
        raise ValueError(f"no environment plugin '{name}' (installed: {', '.join(sorted(eps)) or 'none'})")
    module, _, attr = eps[name].value.partition(":")
    spec = importlib.util.find_spec(module)  # finds the file; the module is not imported here
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        raise ValueError(f"environment plugin '{name}': module {module} has no Python source file")
    source = read_text(spec.origin, max_bytes=MAX_SOURCE, kind="environment")
    return source, Path(spec.origin).name, class_name or attr


def _only_class(tree: ast.Module, filename: str) -> str:
    classes = [n.name for n in tree.body if isinstance(n, ast.ClassDef)]
    if len(classes) != 1:
        raise ValueError(f"{filename} defines {len(classes)} classes ({', '.join(classes) or 'none'}): name one as "
                         f"{filename}:Class")
    return classes[0]
