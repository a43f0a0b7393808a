"""What the gate found: the verdict, the pairs behind it, and summary.json's "baseline" section."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from parity.baseline import Baseline
from parity.compare import PairResult, PairRole
from parity.runner import RunResult

DEFAULT_MAX_NDCG_DROP = 0.005
BASELINE_PREFIX = "baseline:"


@dataclass
class GateResult:
    """The gate's verdict and everything behind it; truthy when nothing drifted."""

    baseline: Baseline
    result: RunResult
    matched: dict[str, str]  # current label -> baseline label
    env: dict[str, Any]
    max_ndcg_drop: float
    ndcg_failures: list[str] = field(default_factory=list)
    newly_failing: list[str] = field(default_factory=list)
    retrieval_note: str | None = None
    overridden: dict[str, str] = field(default_factory=dict)  # baseline label -> spec given
    ndcg_changes: dict[str, float] = field(default_factory=dict)  # today's - baseline's nDCG@10
    updated: Path | None = None
    previous: Path | None = None

    @property
    def drift_pairs(self) -> list[PairResult]:
        return [p for p in self.result.comparison.pairs if p.role is PairRole.BASELINE]

    @property
    def cross_pairs(self) -> list[PairResult]:
        return [p for p in self.result.comparison.pairs if p.role is PairRole.CROSS]

    @property
    def drifted(self) -> list[str]:
        """Current labels whose vectors moved beyond tolerance from their baseline."""
        return [p.b for p in self.drift_pairs if not p]

    @property
    def ndcg_gains(self) -> dict[str, float]:
        """Adapters whose nDCG@10 rose beyond max_ndcg_drop: reported, never a failure."""
        return {k: v for k, v in self.ndcg_changes.items() if v > self.max_ndcg_drop}

    @property
    def passed(self) -> bool:
        return not (self.drifted or self.ndcg_failures or self.newly_failing)

    def __bool__(self) -> bool:
        return self.passed

    def section(self) -> dict[str, Any]:
        """summary.json's "baseline" object."""
        manifest = self.baseline.manifest
        return {
            "path": str(self.baseline.path),
            "created": manifest["created"],
            "tool_version": manifest["tool_version"],
            "passed": self.passed,
            "adapters": {
                pair.b: {
                    "baseline_adapter": self.matched[pair.b],
                    "drifted": not pair,
                    "failures": pair.failures,
                    "n": pair.n,
                    "max_abs": pair.stats()["max_abs"].max,
                }
                for pair in self.drift_pairs
            },
            "drifted": self.drifted,
            "environment_diff": self.env["lines"],
            "libraries_changed": self.env["libraries"],
            "model_files": self.env["model_files"],
            "max_ndcg_drop": self.max_ndcg_drop,
            "ndcg_failures": self.ndcg_failures,
            "ndcg_changes": self.ndcg_changes,
            "ndcg_gains": self.ndcg_gains,
            "overridden": self.overridden,
            "newly_failing_pairs": self.newly_failing,
            "retrieval_note": self.retrieval_note,
            "updated": str(self.updated) if self.updated else None,
            "previous": str(self.previous) if self.previous else None,
        }
