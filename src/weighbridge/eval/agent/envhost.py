"""The program that holds an agent environment inside the sandbox: it loads the environment's class,
sets its initial state, tells the parent which tools it offers, then answers one call at a time.

Runs under the plain interpreter (``-I -S``): standard library only, never imported by weighbridge
itself. Its job (``argv[1]``, JSON) names the environment's source, its class, the initial state and
the file descriptor answers go to. Requests arrive on stdin, one JSON object a line:
``{"op": "call", "name": ..., "arguments": {...}}`` or ``{"op": "state"}``. Each gets one JSON line on
the answer descriptor: ``{"ok": true, "result": ...}`` or ``{"ok": false, "error": ...}``. Answers go
to a descriptor of their own so that whatever the environment prints (stdout, stderr) cannot forge or
garble one; the parent reads those streams apart and keeps only their tail.

A tool is a public method of the class (no leading underscore; ``load_state``, ``state`` and
``tools`` are the environment's own hooks, not tools). Its JSON schema comes from the method's type
hints and its docstring: the first paragraph describes the tool, an ``Args:`` section (``name: text``
or ``name (type): text``) describes the parameters. An environment that defines ``tools()`` gives
its schemas itself (and may answer calls through ``__getattr__``). ``sys_path`` in the job names
directories of installed libraries the environment imports, bound read-only.
"""

import inspect
import json
import os
import sys
import types
import typing

_HOOKS = ("load_state", "state", "tools")
_SIMPLE = {str: "string", int: "integer", float: "number", bool: "boolean", dict: "object", list: "array"}


def _schema(hint):
    """A JSON schema for one type hint (anything unknown: no constraint)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint in _SIMPLE:
        return {"type": _SIMPLE[hint]}
    if origin is typing.Literal:
        return {"enum": list(args)}
    if origin in (list, tuple, set, frozenset):
        return {"type": "array", "items": _schema(args[0])} if args else {"type": "array"}
    if origin is dict:
        return {"type": "object"}
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        schema = _schema(inner[0]) if len(inner) == 1 else {"anyOf": [_schema(a) for a in inner]}
        return schema
    return {}


def _arg_docs(doc):
    """Parameter descriptions from a Google-style ``Args:`` section."""
    out, inside = {}, False
    for line in (doc or "").splitlines():
        text = line.strip()
        if text in ("Args:", "Arguments:", "Parameters:"):
            inside = True
            continue
        if inside:
            if not text or (text.endswith(":") and " " not in text):
                inside = False  # a blank line or the next section ends the parameters
                continue
            name, sep, rest = text.partition(":")
            if sep:
                out[name.split("(")[0].strip()] = rest.strip()
    return out


def _tools(env):
    tools = []
    for name, fn in inspect.getmembers(type(env), inspect.isfunction):
        if name.startswith("_") or name in _HOOKS:
            continue
        doc = inspect.getdoc(fn) or ""
        hints = typing.get_type_hints(fn)
        described = _arg_docs(doc)
        props, required = {}, []
        for pname, p in list(inspect.signature(fn).parameters.items())[1:]:
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            prop = _schema(hints.get(pname))
            if pname in described:
                prop["description"] = described[pname]
            props[pname] = prop
            if p.default is p.empty:
                required.append(pname)
        summary = doc.split("\n\n")[0].replace("\n", " ").strip()
        tools.append({"type": "function", "function": {
            "name": name, "description": summary or name,
            "parameters": {"type": "object", "properties": props, "required": required}}})
    return tools


def _plain(value):
    """The value as JSON can hold it (what is not becomes its repr)."""
    return json.loads(json.dumps(value, default=repr))


def _state(env):
    hook = getattr(env, "state", None)
    if callable(hook):
        return _plain(hook())
    return _plain({k: v for k, v in vars(env).items() if not k.startswith("_")})


def _describe(exc):
    text = "%s: %s" % (type(exc).__name__, exc) if str(exc) else type(exc).__name__
    return text[:2000]


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        job = json.load(f)
    out = os.fdopen(job["answer_fd"], "w", encoding="utf-8", buffering=1)

    def answer(obj):
        out.write(json.dumps(obj, default=repr) + "\n")
        out.flush()

    sys.path[:0] = job.get("sys_path") or []  # the libraries the environment names, bound read-only
    try:
        module = types.ModuleType("environment")
        exec(compile(job["source"], job["filename"], "exec"), module.__dict__)
        env = getattr(module, job["class"])()
        hook = getattr(env, "load_state", None)
        if callable(hook):
            hook(job["initial_state"])
        else:
            for key, value in job["initial_state"].items():
                setattr(env, key, value)
        offered = getattr(env, "tools", None)  # the environment's own schemas, else derived from its methods
        answer({"ok": True, "result": {"tools": list(offered()) if callable(offered) else _tools(env),
                                       "state": _state(env)}})
    except BaseException as e:  # the environment could not start: said once, then the host ends
        answer({"ok": False, "error": "the environment did not start: " + _describe(e)})
        return
    for line in sys.stdin:
        try:
            request = json.loads(line)
            if request.get("op") == "state":
                answer({"ok": True, "result": _state(env)})
                continue
            name, arguments = request["name"], request["arguments"]
            fn = getattr(env, name, None) if not name.startswith("_") and name not in _HOOKS else None
            if not callable(fn):
                answer({"ok": False, "error": "no tool named %r" % name})
                continue
            answer({"ok": True, "result": _plain(fn(**arguments))})
        except BaseException as e:  # a tool's exception is the model's to see, never the host's end
            answer({"ok": False, "error": _describe(e)})


if __name__ == "__main__":
    main()
