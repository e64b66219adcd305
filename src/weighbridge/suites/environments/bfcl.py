"""BFCL's multi-turn environments (file system, messaging, posting, tickets, trading, travel, vehicle,
maths) as one agent environment, for the ``bfcl:multi_turn_*`` suites.

It runs inside the sandbox like any environment, with the installed ``bfcl_eval`` package (and
``mpmath``, which BFCL's maths API imports) bound read-only: the classes, their scenarios and their
behaviour are BFCL's own. As BFCL's executor does, it creates each involved class, loads its part of
the initial configuration (the long-context variant's extra data when asked), maps every public
method to the instance that has it (a later class wins a shared name), answers a call with the
method's result as text (a dict as JSON, anything else as ``str``) and an exception as
``Error during execution: ...``; its state is each instance's public attributes.
"""

import copy
import importlib
import inspect
import json

LIBRARIES = ["bfcl_eval", "mpmath"]
_REFUSED = ("kill", "exit", "quit", "remove", "unlink", "popen", "Popen", "run")


def _plain(value, path=()):
    """An attribute as JSON can hold it: objects by their public attributes, recursively; an object
    met again on its own path (a directory's parent) as a marker, so cycles end."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if id(value) in path or len(path) > 60:
        return "<cycle>"
    inner = path + (id(value),)
    if isinstance(value, dict):
        return {str(k): _plain(v, inner) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v, inner) for v in value]
    if hasattr(value, "__dict__"):
        return {"__class__": type(value).__name__,
                **{k: _plain(v, inner) for k, v in vars(value).items() if not k.startswith("_")}}
    return repr(value)


class BFCLMultiTurn:
    """The involved BFCL classes of one multi-turn entry, behind one set of tools."""

    def load_state(self, state):
        from bfcl_eval.constants.executable_backend_config import CLASS_FILE_PATH_MAPPING, STATELESS_CLASSES

        self._instances = {}
        self._methods = {}
        for name in state["involved_classes"]:
            instance = getattr(importlib.import_module(CLASS_FILE_PATH_MAPPING[name]), name)()
            if name not in STATELESS_CLASSES:
                instance._load_scenario(copy.deepcopy(state["initial_config"].get(name, {})),
                                        long_context=bool(state.get("long_context")))
            self._instances[name] = instance
            for method, bound in inspect.getmembers(instance, predicate=inspect.ismethod):
                if not method.startswith("_"):
                    self._methods[method] = bound
        self._tools = list(state["tools"])

    def tools(self):
        return self._tools

    def state(self):
        return {name: {k: _plain(v) for k, v in vars(instance).items() if not k.startswith("_")}
                for name, instance in self._instances.items()}

    def __getattr__(self, name):
        methods = self.__dict__.get("_methods") or {}
        if name.startswith("_") or name not in methods:
            raise AttributeError(name)

        def call(**arguments):
            if name in _REFUSED:
                return "Error during execution: Function call %s is not allowed." % name
            try:
                result = methods[name](**arguments)
            except Exception as e:
                return "Error during execution: %s" % e
            if isinstance(result, str):
                return result
            if isinstance(result, dict):
                try:
                    return json.dumps(result)
                except Exception:
                    return str(result)
            return str(result)

        return call
