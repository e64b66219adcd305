"""The program that runs inside the sandbox: setup, then the model's code, then the tests, one
assert at a time, and last a completion record on a channel of its own.

Why a record and not the exit status: model code decides how the process ends (``sys.exit(0)``,
``os._exit(0)``, an ``atexit`` hook, a killed parent). Only this harness, after the last test
statement, writes the record, and the scorer passes a case only on a record that carries the
nonce it sent on stdin. A process that ends any other way fails: "exited before the tests ran".

Why values and not verdicts: model code chooses what its functions return, and a returned object
decides its own ``==`` and truthiness (an ``int`` subclass whose ``__eq__`` is always true passed
every assert). So every ``assert`` of the tests, wherever it sits (HumanEval's live inside a
``check`` function), is rewritten to hand its operands to ``check``: they are copied into plain
values - subclasses lose their methods - and sent in the record, tagged by type, and the scorer
compares them in its own process (EvalPlus compares ground-truth outputs the same way). ``is`` /
``is not`` are decided here (identity cannot be overridden). An operand that is no plain value (an
instance of the model's own class) is compared here, in the model's interpreter, and the step says
so (``in_process``).

Limits of this layer, stated plainly: the harness and the model's code share one interpreter, so
code written to attack the harness (walking frames or ``gc`` to find the nonce, the record's file
descriptor or the check function) can still forge a pass; what it captures before model code runs
(the JSON encoder, ``type``, the record fd) cannot be rebound by name. That is why the verdict is
not the security boundary: the bubblewrap sandbox around this process is, and it holds whatever
this file reports.

Runs under the plain interpreter (``-I -S``): standard library only. Its input is a JSON file
(``argv[1]``: setup, code, tests, record fd, limits) and the nonce, read from stdin once.
"""

import ast
import os
import resource
import sys


def _limits(limits):
    # Set inside the sandbox's own user namespace, so RLIMIT_NPROC counts only this sandbox's
    # processes. Soft and hard limits alike: without privileges, code cannot raise a hard limit.
    for name, value in limits.items():
        which = getattr(resource, name, None)
        if which is not None:
            resource.setrlimit(which, (value, value))


def _describe(exc):
    text = "%s: %s" % (type(exc).__name__, exc) if str(exc) else type(exc).__name__
    return text[:300]


def _exit_reason(exc, phase):
    code = exc.code
    return "exited before the tests ran (sys.exit(%r) in the %s)" % (code, phase)


_OPS = {"Eq": "==", "NotEq": "!=", "Lt": "<", "LtE": "<=", "Gt": ">", "GtE": ">=", "In": "in", "NotIn": "not in",
        "Is": "is", "IsNot": "is not"}
_MAX_NODES = 20000  # values past this size are compared in-process (and marked so)
_MAX_CHARS = 1 << 16


class _Opaque(Exception):
    pass


def _plain_copier():
    """A function that copies a value into plain, tagged data, made before model code runs: the
    builtins it uses are held in its closure, and builtin types cannot be patched."""
    T, INT, FLOAT, STR, BYTES, COMPLEX = type, int, float, str, bytes, complex
    LIST, TUPLE, DICT, SET, FROZENSET = list, tuple, dict, set, frozenset
    sub = issubclass
    int_add, float_mul, str_str, bytes_hex = INT.__add__, FLOAT.__mul__, STR.__str__, BYTES.hex
    float_repr, int_repr = FLOAT.__repr__, INT.__repr__
    list_iter, tuple_iter, dict_items, set_iter, fset_iter = (LIST.__iter__, TUPLE.__iter__, DICT.items,
                                                              SET.__iter__, FROZENSET.__iter__)
    length = len

    def copy(v, budget):
        budget[0] -= 1
        if budget[0] < 0:
            raise _Opaque("too large")
        if v is None or v is True or v is False:
            return ["n"] if v is None else ["b", v]
        t = T(v)
        if sub(t, INT):
            text = int_repr(int_add(v, 0))
            if length(text) > 4000:
                raise _Opaque("too large")
            return ["i", text]
        if sub(t, FLOAT):
            return ["f", float_repr(float_mul(v, 1.0))]
        if sub(t, STR):
            text = str_str(v)
            budget[1] -= length(text)
            if budget[1] < 0:
                raise _Opaque("too large")
            return ["s", text]
        if sub(t, BYTES):
            budget[1] -= 2 * length(v)
            if budget[1] < 0:
                raise _Opaque("too large")
            return ["y", bytes_hex(v)]
        if sub(t, COMPLEX):
            return ["c", float_repr(v.real + 0.0), float_repr(v.imag + 0.0)] if t is COMPLEX else _opaque()
        if sub(t, LIST):
            return ["l", [copy(x, budget) for x in list_iter(v)]]
        if sub(t, TUPLE):
            return ["t", [copy(x, budget) for x in tuple_iter(v)]]
        if sub(t, DICT):
            return ["d", [[copy(k, budget), copy(x, budget)] for k, x in dict_items(v)]]
        if sub(t, SET):
            return ["S", [copy(x, budget) for x in set_iter(v)]]
        if sub(t, FROZENSET):
            return ["F", [copy(x, budget) for x in fset_iter(v)]]
        raise _Opaque(t.__name__ if t.__class__ is type else "object")

    def _opaque():
        raise _Opaque("complex subclass")

    def plain(v):
        return copy(v, [_MAX_NODES, _MAX_CHARS])

    return plain


class _Rewrite(ast.NodeTransformer):
    """``assert A op B`` -> ``__wb_check__(line, op, A, B)``; ``assert A`` -> ``__wb_check__(line, "truth", A)``;
    ``assert not A`` -> ``__wb_check__(line, "not", A)``. Chained comparisons and other shapes keep
    their assert (decided in-process, marked)."""

    def visit_Assert(self, node):
        t = node.test
        def call(*args):
            return ast.copy_location(ast.Expr(ast.Call(ast.Name("__wb_check__", ast.Load()),
                                                       [ast.Constant(node.lineno), *args], [])), node)
        if isinstance(t, ast.Compare) and len(t.ops) == 1 and type(t.ops[0]).__name__ in _OPS:
            return call(ast.Constant(type(t.ops[0]).__name__), t.left, t.comparators[0])
        if isinstance(t, ast.UnaryOp) and isinstance(t.op, ast.Not):
            return call(ast.Constant("not"), t.operand)
        if not isinstance(t, ast.Compare):
            return call(ast.Constant("truth"), t)
        return node


def _main():
    import json
    import operator

    write, close, exit_now = os.write, os.close, os._exit  # held before any model code can replace them
    try:  # the C encoder, captured now: model code cannot rebind what this closure holds
        from _json import encode_basestring_ascii, make_encoder

        _enc = make_encoder(None, None, encode_basestring_ascii, None, ":", ",", False, False, True)
        join = "".join

        def dumps(obj):
            return join(_enc(obj, 0))
    except ImportError:  # pragma: no cover - CPython always has _json
        dumps = json.dumps
    plain = _plain_copier()
    compare = {"Eq": operator.eq, "NotEq": operator.ne, "Lt": operator.lt, "LtE": operator.le, "Gt": operator.gt,
               "GtE": operator.ge, "In": lambda a, b: a in b, "NotIn": lambda a, b: a not in b}
    to_bool, length, text = bool, len, str  # builtins model code could rebind, held here
    with open(sys.argv[1], encoding="utf-8") as f:
        job = json.load(f)
    nonce = sys.stdin.buffer.readline().strip().decode("ascii")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    record_fd = job["record_fd"]
    sys.argv = ["main.py"]
    _limits(job["limits"])
    checks = []  # the current test statement's checks

    def check(line, op, left, right=None):
        """Record an assert's operands as plain values for the scorer to compare; decide here only
        identity and what cannot be copied (marked in_process)."""
        if op in ("Is", "IsNot"):
            same = left is right
            checks.append({"line": line, "op": op, "ok": same if op == "Is" else not same})
            return
        sides = [left] if op in ("truth", "not") else [left, right]
        copies, opaque = [], []
        for side in sides:
            try:
                copies.append(plain(side))
            except _Opaque as e:
                opaque.append(text(e))
        if not opaque:
            entry = {"line": line, "op": op, "left": copies[0]}
            if length(copies) == 2:
                entry["right"] = copies[1]
            checks.append(entry)
            return
        if length(sides) == 2 and length(opaque) == 1:  # a plain value against an object that decides its own ==
            checks.append({"line": line, "op": op, "ok": False,
                           "error": "compared a plain value with a %s, which is not one" % opaque[0]})
            return
        try:  # nothing plain to copy (the tests' own objects, or two of the model's): decided here, marked
            if op == "truth":
                ok = to_bool(left)
            elif op == "not":
                ok = not to_bool(left)
            else:
                ok = to_bool(compare[op](left, right))
        except BaseException as exc:  # noqa: BLE001 - the comparison itself failed
            checks.append({"line": line, "op": op, "ok": False, "error": _describe(exc)})
            return
        checks.append({"line": line, "op": op, "ok": ok, "in_process": "not a plain value (%s)" % opaque[0]})

    def finish(reason, steps, completed):
        line = dumps({"nonce": nonce, "completed": completed, "reason": reason, "steps": steps}) + "\n"
        data = line.encode("utf-8")
        while data:
            data = data[write(record_fd, data):]
        close(record_fd)
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            exit_now(0)

    # the tests are parsed, rewritten and compiled before any model code runs: nothing it patches
    # (builtins, ast, compile) can change them
    definitions = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Assign,
                   ast.AnnAssign, ast.AugAssign)
    run, module = exec, ast.Module
    try:
        tree = ast.fix_missing_locations(_Rewrite().visit(ast.parse(job["tests"], "<tests>")))
        statements = [(stmt.lineno, not isinstance(stmt, definitions),
                       compile(module(body=[stmt], type_ignores=[]), "<tests>", "exec")) for stmt in tree.body]
    except SyntaxError as e:
        finish("the case's tests do not parse: %s" % e, [], False)

    scope = {"__name__": "__main__", "__builtins__": __builtins__}
    for phase, label in (("setup", "case's setup"), ("code", "answer's code")):
        source = job[phase]
        if not source:
            continue
        try:
            run(compile(source, "<%s>" % phase, "exec"), scope)
        except SystemExit as e:
            finish(_exit_reason(e, label), [], False)
        except BaseException as e:  # noqa: BLE001 - every failure of model code is a failed case
            finish("the %s raised %s" % (label, _describe(e)), [], False)

    steps = []
    scope["__wb_check__"] = check
    for lineno, counted, code in statements:  # counted: asserts, calls, loops - the statements that test
        del checks[:]
        try:
            run(code, scope)
            ok, why = True, ""
        except SystemExit as e:
            finish("exited during the tests (sys.exit(%r))" % (e.code,), steps, False)
        except BaseException as e:  # noqa: BLE001
            ok, why = False, _describe(e)
        if counted or not ok or checks:
            steps.append({"line": lineno, "ok": ok, "error": why, "checks": checks[:]})
    finish("", steps, True)


if __name__ == "__main__":
    _main()
