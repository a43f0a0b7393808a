"""Searching for divergences: strategies, profiles, batch-first fuzzing, shrinking, regressions.

Submodules are imported on demand (hypothesis is heavy)."""
