"""Suites of cases: loading from YAML, JSONL or CSV, and the built-in starter suite."""

from .case import Case
from .loader import Suite, load_suite, load_suites

__all__ = ["Case", "Suite", "load_suite", "load_suites"]
