"""Scorers decide whether one generation answers one case. ``build_scorer`` turns a spec into one."""

from .base import Score, Scorer, build_scorer, scorer_types

__all__ = ["Score", "Scorer", "build_scorer", "scorer_types"]
