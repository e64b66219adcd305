"""The program that runs inside the sandbox: setup, then the model's code, then the tests, one
assert at a time, and last a completion record on a channel of its own.

Why a record and not the exit status: model code decides how the process ends (``sys.exit(0)``,
``os._exit(0)``, an ``atexit`` hook, a killed parent). Only this harness, after the last test
statement, writes the record, and the scorer passes a case only on a record that carries the
nonce it sent on stdin. A process that ends any other way fails: "exited before the tests ran".

Limits of this layer, stated plainly: the harness and the model's code share one interpreter, so
code written to attack the harness (walking frames or ``gc`` to find the nonce and the record's
file descriptor) can forge a pass. That is why the verdict is not the security boundary: the
bubblewrap sandbox around this process is, and it holds whatever this file reports.

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


def _main():
    import json

    write, close, exit_now = os.write, os.close, os._exit  # held before any model code can replace them
    with open(sys.argv[1], encoding="utf-8") as f:
        job = json.load(f)
    nonce = sys.stdin.buffer.readline().strip().decode("ascii")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    record_fd = job["record_fd"]
    sys.argv = ["main.py"]
    _limits(job["limits"])
    dumps = json.dumps

    def finish(passed, reason, steps):
        line = dumps({"nonce": nonce, "passed": passed, "reason": reason, "steps": steps}) + "\n"
        data = line.encode("utf-8")
        while data:
            data = data[write(record_fd, data):]
        close(record_fd)
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            exit_now(0)

    scope = {"__name__": "__main__", "__builtins__": __builtins__}
    for phase, label in (("setup", "case's setup"), ("code", "answer's code")):
        source = job[phase]
        if not source:
            continue
        try:
            exec(compile(source, "<%s>" % phase, "exec"), scope)
        except SystemExit as e:
            finish(False, _exit_reason(e, label), [])
        except BaseException as e:  # noqa: BLE001 - every failure of model code is a failed case
            finish(False, "the %s raised %s" % (label, _describe(e)), [])

    steps = []
    try:
        tree = ast.parse(job["tests"], "<tests>")
    except SyntaxError as e:
        finish(False, "the case's tests do not parse: %s" % e, [])
    definitions = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Assign,
                   ast.AnnAssign, ast.AugAssign)
    for stmt in tree.body:
        counted = not isinstance(stmt, definitions)  # asserts, calls, loops: the statements that test
        try:
            exec(compile(ast.Module(body=[stmt], type_ignores=[]), "<tests>", "exec"), scope)
            ok, why = True, ""
        except SystemExit as e:
            finish(False, "exited during the tests (sys.exit(%r))" % (e.code,), steps)
        except BaseException as e:  # noqa: BLE001
            ok, why = False, _describe(e)
        if counted or not ok:
            steps.append({"line": stmt.lineno, "ok": ok, "error": why})
    failed = [s for s in steps if not s["ok"]]
    if failed:
        first = failed[0]
        reason = "%d of %d test statements failed; first at tests line %d: %s" % (
            len(failed), len(steps), first["line"], first["error"] or "AssertionError")
        finish(False, reason, steps)
    finish(True, "all %d test statements passed" % len(steps) if steps else "ran to the end (no tests)", steps)


if __name__ == "__main__":
    _main()
