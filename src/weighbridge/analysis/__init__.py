"""Figures from stored runs, computed once: the run summary, paired comparisons, variants, statistics."""
