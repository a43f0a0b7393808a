"""Why two adapters differ: configuration diff, transform probing, noise floor, named causes.

For each failing pair, candidate explanations are tried in order of evidence (settings that
differ first, then preprocessing transforms), each only on the failing texts nothing has
explained yet, so every failing text is counted under exactly one cause and counts add up.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from parity.adapters import Adapter, AdapterSpec
from parity.compare import METRICS, PairResult, Tolerance, deltas
from parity.diagnose.noise import find_outlier, noise_floor
from parity.diagnose.probes import CAUSES, STAGE_OF, TEXT_TRANSFORMS
from parity.diagnose.settings import ConfigChange, config_changes, config_differences
from parity.diagnose.tokens import token_diff

__all__ = ["CAUSES", "Cause", "Diagnosis", "Side", "diagnose_pair", "diagnose_run"]


@dataclass
class Cause:
    """One reason a pair differs, and how many failing texts it explains."""

    cause: str
    stage: str | None
    detail: str
    explained: int
    fix: str
    indices: list[int] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "cause": self.cause,
            "stage": self.stage,
            "detail": self.detail,
            "explained": self.explained,
            "fix": self.fix,
            "indices": self.indices[:50],
            "tokens": self.tokens,
        }


@dataclass
class Diagnosis:
    """Everything diagnosis found for one pair."""

    causes: list[Cause]
    config_diff: list[dict[str, Any]]
    probes: list[dict[str, Any]]
    noise_floor: dict[str, dict[str, float]]
    first_stage: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "config_diff": self.config_diff,
            "probes": self.probes,
            "noise_floor": self.noise_floor,
            "first_stage": self.first_stage,
        }


@dataclass
class Side:
    """One adapter of a pair: its spec, the live adapter, its vectors and its effective config."""

    label: str
    spec: AdapterSpec
    adapter: Adapter
    vectors: np.ndarray
    config: dict[str, Any]


def _within(x: np.ndarray, y: np.ndarray, tolerance: Tolerance) -> np.ndarray:
    return tolerance.within(deltas(x, y))


class _Explainer:
    """Assigns failing texts to the first candidate that explains them."""

    def __init__(self, failing: list[int]) -> None:
        self.remaining = list(failing)
        self.causes: dict[tuple[str, str], Cause] = {}
        self.probes: list[dict[str, Any]] = []

    def record(
        self,
        key: tuple[str, str],
        probe: str,
        tried: list[int],
        ok: np.ndarray,
        make: Callable[[], Cause],
    ) -> None:
        explained = [i for i, good in zip(tried, ok, strict=True) if good]
        self.probes.append({"probe": probe, "tried": len(tried), "explained": len(explained)})
        if not explained:
            return
        if key not in self.causes:
            self.causes[key] = make()
        self.causes[key].indices += explained
        self.causes[key].explained += len(explained)
        done = set(explained)
        self.remaining = [i for i in self.remaining if i not in done]


def _token_note(a: Side, b: Side, text: str) -> list[str]:
    a_tokens = a.adapter.tokenize([text])
    b_tokens = b.adapter.tokenize([text])
    if a_tokens is None or b_tokens is None:
        return []
    notes = token_diff(a_tokens[0], b_tokens[0])
    if len(a_tokens[0]) != len(b_tokens[0]):
        notes.append(f"{a.label} keeps {len(a_tokens[0])} tokens, {b.label} {len(b_tokens[0])}")
    return [n if len(n) <= 160 else n[:157] + "..." for n in notes]


def diagnose_pair(
    a: Side,
    b: Side,
    texts: Sequence[str],
    pair: PairResult,
    model: str,
    tolerance: Tolerance,
    progress: Callable[[str], None],
    *,
    frozen_a: bool = False,
) -> Diagnosis:
    """Explain the failing texts of one pair.

    `frozen_a`: a's vectors were made elsewhere (a baseline) and a's adapter cannot reproduce
    them, so only probes that re-run b and compare with a's vectors are sound; no noise floor."""
    failing = pair.failing_indices()
    ex = _Explainer(failing)
    diff = [
        {"setting": k, "a": va, "b": vb} for k, va, vb in config_differences(a.config, b.config)
    ]

    # 1. unit re-normalization: no re-embedding needed
    if ex.remaining:
        rows = ex.remaining
        unit = [
            v[rows] / np.maximum(np.linalg.norm(v[rows], axis=1, keepdims=True), 1e-12)
            for v in (a.vectors, b.vectors)
        ]
        raw_side, unit_side = (a, b) if not a.config.get("normalize") else (b, a)
        ex.record(
            ("normalization", ""),
            "unit re-normalization",
            rows,
            _within(unit[0], unit[1], tolerance),
            lambda: Cause(
                "normalization",
                STAGE_OF["normalization"],
                f"{unit_side.label} returns unit vectors (normalize="
                f"{unit_side.config.get('normalize')}), {raw_side.label} does "
                f"not (normalize={raw_side.config.get('normalize')}).",
                0,
                f"normalize {raw_side.label}'s vectors (normalize=true) or compare "
                "with cosine only",
            ),
        )

    # 2. settings that differ, rebuilt on the side that has the option
    changes = config_changes(
        a.label,
        a.config,
        set(type(a.adapter).all_options()),
        b.label,
        b.config,
        set(type(b.adapter).all_options()),
    )
    for change in changes:
        if not ex.remaining:
            break
        if frozen_a and change.side == "a":
            continue
        side, other = (a, b) if change.side == "a" else (b, a)
        rows = list(ex.remaining)
        options = {**side.spec.options, change.key: str(change.value)}
        rebuilt = AdapterSpec(side.spec.name, options, side.label).build(model)
        progress(
            f"diagnose {a.label} vs {b.label}: trying {change.key}={change.value} on "
            f"{side.label} ({len(rows)} texts)"
        )
        with rebuilt:
            again = rebuilt.embed([texts[i] for i in rows])
        ex.record(
            (change.cause, change.side),
            f"{side.label}: {change.key}={change.value}",
            rows,
            _within(again, other.vectors[rows], tolerance),
            functools.partial(_cause_of_change, change, a, b, texts[rows[0]]),
        )

    # 3. preprocessing transforms: does X(x) equal Y(T(x))? Then X applies T.
    for transform in TEXT_TRANSFORMS:
        for doer, other in ((a, b),) if frozen_a else ((a, b), (b, a)):
            rows = [i for i in ex.remaining if transform.apply(texts[i]) != texts[i]]
            if not rows:
                continue
            again = other.adapter.embed([transform.apply(texts[i]) for i in rows])
            first = texts[rows[0]]

            def make(t=transform, d=doer, o=other, sample=first) -> Cause:
                return Cause(
                    t.cause,
                    STAGE_OF[t.cause],
                    f"{d.label} {t.says} before tokenizing, {o.label} does not "
                    f"(e.g. {sample[:40]!r}).",
                    0,
                    _transform_fix(t.name, d, o),
                    tokens=_token_note(a, b, sample),
                )

            ex.record(
                (transform.cause, doer.label),
                f"{doer.label}: {transform.name}",
                rows,
                _within(doer.vectors[rows], again, tolerance),
                make,
            )

    # 4. the noise floor: what batching alone changes
    floor: dict[str, dict[str, float]] = {}
    if not frozen_a:
        progress(f"diagnose {a.label} vs {b.label}: noise floor")
        floor = {s.label: noise_floor(s.adapter, texts, s.vectors) for s in (a, b)}
    if ex.remaining and floor:
        limit = {m: 2 * max(floor[a.label][m], floor[b.label][m]) for m in METRICS}
        rows = list(ex.remaining)
        ok = Tolerance(**limit).within({m: pair.per_text[m][rows] for m in METRICS})
        ex.record(
            ("batch-noise", ""),
            "within the noise floor",
            rows,
            ok,
            lambda: Cause(
                "batch-noise",
                STAGE_OF["batch-noise"],
                f"the deltas are within twice what batching alone changes "
                f"({a.label}: max_abs {floor[a.label]['max_abs']:.2g}, "
                f"{b.label}: {floor[b.label]['max_abs']:.2g}).",
                0,
                "raise the tolerance above the noise floor (see min_tolerance)",
            ),
        )
    causes = list(ex.causes.values())
    if ex.remaining:
        causes.append(
            Cause(
                "unknown",
                None,
                f"{len(ex.remaining)} failing texts match no known cause between "
                f"{a.label} and {b.label}.",
                len(ex.remaining),
                "compare the stages by hand (parity diagnose) and report a new cause",
                indices=list(ex.remaining),
            )
        )
    causes.sort(key=lambda c: -c.explained)
    first_stage = first_differing_stage(a, b, texts[failing[0]], tolerance) if failing else None
    if first_stage is None and causes:
        first_stage = causes[0].stage
    return Diagnosis(causes, diff, ex.probes, floor, first_stage)


def first_differing_stage(a: Side, b: Side, text: str, tolerance: Tolerance) -> str | None:
    """Walk token ids -> attention mask -> token embeddings -> pooled -> normalized on one text;
    stages past the token ids need both sides to expose them (the custom encoder does)."""
    a_tokens, b_tokens = a.adapter.tokenize([text]), b.adapter.tokenize([text])
    if a_tokens is not None and b_tokens is not None and a_tokens[0] != b_tokens[0]:
        return "input_ids"
    a_stages = getattr(a.adapter, "stages", None)
    b_stages = getattr(b.adapter, "stages", None)
    if a_stages is None or b_stages is None:
        return None
    x, y = a_stages([text]), b_stages([text])
    for stage in ("input_ids", "attention_mask", "token_embeddings"):
        left, right = x[stage][0], y[stage][0]
        if (
            left.shape != right.shape
            or np.abs(left.astype(float) - right).max() > tolerance.max_abs
        ):
            return stage
    for stage in ("pooled", "normalized"):
        if not _within(x[stage], y[stage], tolerance).all():
            return stage
    return None


def _cause_of_change(change: ConfigChange, a: Side, b: Side, sample: str) -> Cause:
    tokens = _token_note(a, b, sample) if change.cause == "truncation" else []
    return Cause(change.cause, STAGE_OF[change.cause], change.detail, 0, change.fix, tokens=tokens)


def _transform_fix(name: str, doer: Side, other: Side) -> str:
    if name in ("strip", "lstrip", "rstrip") and "strip" in doer.spec.options:
        return f"set strip=false on {doer.label}, or {name} texts before {other.label}"
    if name == "newline":
        return (
            f'replace "\\n" with " " before calling {other.label} too, or feed {doer.label} '
            "texts without newlines"
        )
    return f"apply {name} before {other.label} too, or remove it from {doer.label}'s preprocessing"


def diagnose_run(result: Any, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Diagnose every failing pair of a RunResult in place; return run-level findings."""
    progress = progress or (lambda message: None)
    sides = {
        label: Side(
            label, result.specs[label], adapter, result.embeddings[label], result.configs[label]
        )
        for label, adapter in result.adapters.items()
    }
    for pair in result.comparison.pairs:
        if pair or pair.a not in sides or pair.b not in sides:
            continue
        progress(f"diagnosing {pair.a} vs {pair.b} ({pair.failures} failing texts)")
        found = diagnose_pair(
            sides[pair.a],
            sides[pair.b],
            result.texts,
            pair,
            result.model,
            result.comparison.tolerance,
            progress,
        )
        pair.causes = [c.as_dict() for c in found.causes]
        pair.diagnosis = found.as_dict()
    outlier = find_outlier(result.comparison.pairs, list(result.embeddings))
    return {"outlier": outlier}
