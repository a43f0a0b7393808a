"""Baselines: today's vectors with their provenance, frozen for `parity gate` to check."""

from __future__ import annotations

from parity.baseline.create import build_manifest, create_baseline
from parity.baseline.manifest import SCHEMA_VERSION, environment_diff
from parity.baseline.store import Baseline, load_baseline, write_baseline

__all__ = [
    "SCHEMA_VERSION",
    "Baseline",
    "build_manifest",
    "create_baseline",
    "environment_diff",
    "load_baseline",
    "write_baseline",
]
