"""Searching for divergences: hypothesis strategies and profiles, batch-first fuzzing,
shrinking, and the regression corpus. Submodules are imported on demand (hypothesis is heavy)."""
