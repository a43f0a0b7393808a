"""Why two adapters differ: non-finite rows, configuration diff, transform probing, noise floor.

For each failing pair, candidate explanations are tried in order of evidence (NaN/Inf rows first,
then vector norms, settings that differ, preprocessing transforms, then settings combined), each
only on the failing texts nothing has explained yet and only where its premise holds, so every
failing text is counted under exactly one cause and counts add up. A probe a side cannot express
is skipped and listed in `Diagnosis.probes` with the reason.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from parity.adapters import Adapter, AdapterSpec
from parity.compare import METRICS, PairResult, Tolerance, deltas
from parity.diagnose.noise import find_outlier, noise_floor
from parity.diagnose.probes import CAUSES, STAGE_OF, TEXT_TRANSFORMS, TextTransform
from parity.diagnose.settings import (
    ConfigChange,
    SideSettings,
    config_changes,
    config_differences,
)
from parity.diagnose.tokens import token_diff

__all__ = ["CAUSES", "Cause", "Diagnosis", "Side", "diagnose_pair", "diagnose_run"]

MEASURED = "measured"
INFERRED = "inferred"
STAGE_ORDER = ("input_ids", "attention_mask", "token_embeddings", "pooled", "normalized")
UNIT_NORM_TOL = 1e-2  # |norm - 1| within this counts as a unit vector (fp16 rounding included)
MAX_COMBINED = 3  # settings changed together in one combined probe, at most


@dataclass
class Cause:
    """One reason a pair differs, and how many failing texts it explains.

    `evidence` is "measured" when a probe reproduced the other side within tolerance on these
    texts (for `non-finite`: the NaN/Inf was seen), "inferred" when the cause is put down by
    elimination (batch-noise, unknown; the gate's model-files, library-version, environment).
    `basis` says what it rests on. `also` names further causes of the same texts when only a
    combined probe reproduced them (cause "pooling", also ["truncation"]); such texts are counted
    once, under `cause`, so the `explained` counts of a pair add up to its failures.
    """

    cause: str
    stage: str | None
    detail: str
    explained: int
    fix: str
    indices: list[int] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    evidence: str = MEASURED
    basis: str = ""
    also: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The cause and those combined with it: "pooling+truncation"."""
        return "+".join([self.cause, *self.also])

    def as_dict(self) -> dict[str, Any]:
        return {
            "cause": self.cause,
            "also": self.also,
            "stage": self.stage,
            "detail": self.detail,
            "explained": self.explained,
            "fix": self.fix,
            "evidence": self.evidence,
            "basis": self.basis,
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
    """One adapter of a pair: its spec, the live adapter, its vectors and its effective config.

    `fixable` is False for a side nobody can set (a baseline's recorded vectors): no fix names it."""

    label: str
    spec: AdapterSpec
    adapter: Adapter
    vectors: np.ndarray
    config: dict[str, Any]
    fixable: bool = True

    def settings(self) -> SideSettings:
        return SideSettings(self.label, self.config, type(self.adapter).all_options(), self.fixable)


def _within(x: np.ndarray, y: np.ndarray, tolerance: Tolerance) -> np.ndarray:
    return tolerance.within(deltas(x, y))


class _Explainer:
    """Assigns failing texts to the first candidate that explains them."""

    def __init__(self, failing: list[int]) -> None:
        self.remaining = list(failing)
        self.causes: dict[tuple[str, str], Cause] = {}
        self.probes: list[dict[str, Any]] = []

    def skip(self, probe: str, why: str) -> None:
        self.probes.append({"probe": probe, "skipped": why})

    def record(
        self,
        key: tuple[str, str],
        probe: str,
        tried: list[int],
        ok: np.ndarray,
        make: Callable[[], Cause],
        reproduced: str | None = None,
    ) -> None:
        """Count the texts `probe` explained under `key`; `reproduced` (what reproduced what)
        becomes the cause's measured basis, with the counts."""
        explained = [i for i, good in zip(tried, ok, strict=True) if good]
        self.probes.append({"probe": probe, "tried": len(tried), "explained": len(explained)})
        if not explained:
            return
        if key not in self.causes:
            self.causes[key] = make()
        cause = self.causes[key]
        cause.indices += explained
        cause.explained += len(explained)
        if reproduced:
            line = f"{reproduced} on {len(explained)}/{len(tried)} texts"
            cause.basis = f"{cause.basis}; {line}" if cause.basis else line
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


@dataclass
class _Pair:
    """What every probe needs: both sides, the texts, where to rebuild, how close is close."""

    a: Side
    b: Side
    texts: Sequence[str]
    model: str
    tolerance: Tolerance
    progress: Callable[[str], None]
    frozen_a: bool
    reference: dict[str, Any]


def model_reference(model: str) -> dict[str, Any]:
    """The model's own configuration (what sentence-transformers does with it): fixes point here."""
    from parity.modelinfo import read_model_info

    if not (Path(model) / "config.json").is_file():
        return {}
    try:
        info = read_model_info(model)
    except Exception:  # an unreadable config only costs the fix its direction
        return {}
    return {"max_length": info.max_length, "pooling": info.pooling, "normalize": info.normalize}


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
    ctx = _Pair(a, b, texts, model, tolerance, progress, frozen_a, model_reference(model))
    diff = [
        {"setting": k, "a": va, "b": vb} for k, va, vb in config_differences(a.config, b.config)
    ]
    _probe_non_finite(ex, ctx)
    _probe_normalization(ex, ctx)
    changes = config_changes(a.settings(), b.settings(), ctx.reference)
    ex.probes += changes.skipped
    for change in changes.changes:
        _probe_settings(ex, ctx, [change])
    _probe_transforms(ex, ctx)
    _probe_combined(ex, ctx, changes.changes)
    floor = _probe_noise(ex, ctx, pair)
    causes = list(ex.causes.values())
    if ex.remaining:
        causes.append(_unknown(ex, a, b))
    causes.sort(key=lambda c: -c.explained)
    finite = [i for i in failing if not _non_finite_rows(a, b, [i])]
    first_stage = first_differing_stage(a, b, texts[finite[0]], tolerance) if finite else None
    if first_stage is None and causes:
        first_stage = causes[0].stage
    return Diagnosis(causes, diff, ex.probes, floor, first_stage)


def _non_finite_rows(a: Side, b: Side, rows: list[int]) -> list[int]:
    return [
        i for i in rows if not (np.isfinite(a.vectors[i]).all() and np.isfinite(b.vectors[i]).all())
    ]


def _probe_non_finite(ex: _Explainer, ctx: _Pair) -> None:
    """NaN/Inf rows are findings of their own, measured, and no other probe sees them."""
    for side in (ctx.a, ctx.b):
        rows = [i for i in ex.remaining if not np.isfinite(side.vectors[i]).all()]
        if rows:
            ex.record(
                ("non-finite", side.label),
                f"{side.label}: NaN/Inf in the output",
                rows,
                np.ones(len(rows), dtype=bool),
                functools.partial(_non_finite_cause, side, ctx.texts[rows[0]], len(rows)),
            )


def _non_finite_cause(side: Side, sample: str, count: int) -> Cause:
    dtype = side.config.get("dtype")
    option = type(side.adapter).all_options().get("dtype")
    if not side.fixable:
        fix = "the recorded vectors hold NaN/Inf for these texts: record finite ones"
    elif dtype == "float16" and option is not None:
        wider = [d for d in ("float32", "bfloat16") if not option.choices or d in option.choices]
        fix = f"fp16 overflow: set dtype={' or '.join(wider)} on {side.label}"
    else:
        fix = (
            f"run {side.label} with dtype=float32 to see whether it overflows, and check its "
            "inputs for these texts"
        )
    stage = _non_finite_stage(side, sample) or (
        STAGE_OF["non-finite"] if dtype == "float16" else None
    )
    return Cause(
        "non-finite",
        stage,
        f"{side.label} returns NaN or Inf for {count} texts (dtype {dtype}).",
        0,
        fix,
        basis=f"{side.label}'s output holds NaN or Inf for {count} failing texts (seen in the vectors)",
    )


def _non_finite_stage(side: Side, text: str) -> str | None:
    """The first stage whose output is not finite, where the adapter exposes its stages."""
    stages = getattr(side.adapter, "stages", None)
    if stages is None or not side.fixable:
        return None
    found = stages([text])
    for stage in ("token_embeddings", "pooled", "normalized"):
        values = found[stage][0]
        if not np.isfinite(np.asarray(values, dtype=np.float64)).all():
            return stage
    return None


def _is_unit(vectors: np.ndarray) -> np.ndarray:
    return np.abs(np.linalg.norm(vectors.astype(np.float64), axis=1) - 1.0) <= UNIT_NORM_TOL


def _probe_normalization(ex: _Explainer, ctx: _Pair) -> None:
    """Re-normalize both sides, only on texts where exactly one side returns unit vectors."""
    rows = list(ex.remaining)
    if not rows:
        return
    unit_a, unit_b = _is_unit(ctx.a.vectors[rows]), _is_unit(ctx.b.vectors[rows])
    if (unit_a == unit_b).all():
        which = "both sides return" if unit_a.all() else "the sides agree on whether they return"
        ex.skip("unit re-normalization", f"{which} unit vectors on every failing text")
        return
    for unit, raw, mask in ((ctx.a, ctx.b, unit_a & ~unit_b), (ctx.b, ctx.a, unit_b & ~unit_a)):
        tried = [i for i, take in zip(rows, mask, strict=True) if take]
        if not tried:
            continue
        x, y = _unit(unit.vectors[tried]), _unit(raw.vectors[tried])
        norms = np.linalg.norm(raw.vectors[tried].astype(np.float64), axis=1)
        ex.record(
            ("normalization", unit.label),
            "unit re-normalization",
            tried,
            _within(x, y, ctx.tolerance),
            functools.partial(_normalization_cause, unit, raw, norms, ctx.reference),
            reproduced="both sides scaled to unit length agreed",
        )


def _normalization_cause(
    unit: Side, raw: Side, norms: np.ndarray, reference: dict[str, Any]
) -> Cause:
    return Cause(
        "normalization",
        STAGE_OF["normalization"],
        f"{unit.label} returns unit vectors, {raw.label} does not (norms "
        f"{norms.min():.3g} to {norms.max():.3g}).",
        0,
        _normalization_fix(unit, raw, reference.get("normalize")),
    )


def _normalization_fix(unit: Side, raw: Side, model_normalizes: bool | None) -> str:
    """Point at the side that departs from the model (Normalize module or not)."""
    cosine = "or compare with cosine only (the sides differ only in vector length)"

    def settable(side: Side) -> bool:
        return side.fixable and "normalize" in type(side.adapter).all_options()

    if model_normalizes is not None:
        departing = raw if model_normalizes else unit
        if settable(departing):
            state, note = ("true", "has a") if model_normalizes else ("false", "has no")
            return f"set normalize={state} on {departing.label} (the model {note} Normalize module)"
    for side in (raw, unit):
        if settable(side):
            state = "true" if side is raw else "false"
            return f"set normalize={state} on {side.label} to match the other side, {cosine}"
    return f"normalize {raw.label}'s vectors yourself, {cosine}"


def _probe_settings(ex: _Explainer, ctx: _Pair, combo: list[ConfigChange]) -> None:
    """Rebuild one side with the changed options; does it now give the other side's vectors?"""
    if not ex.remaining:
        return
    side_name = combo[0].side
    side, other = (ctx.a, ctx.b) if side_name == "a" else (ctx.b, ctx.a)
    setting = ", ".join(f"{c.key}={c.value}" for c in combo)
    if ctx.frozen_a and side_name == "a":
        ex.skip(
            f"{side.label}: {setting}",
            f"{side.label}'s vectors were recorded elsewhere; only {other.label} is rebuilt",
        )
        return
    rows = list(ex.remaining)
    options = {**side.spec.options, **{c.key: str(c.value) for c in combo}}
    rebuilt = AdapterSpec(side.spec.name, options, side.label).build(ctx.model)
    ctx.progress(
        f"diagnose {ctx.a.label} vs {ctx.b.label}: trying {setting} on {side.label} "
        f"({len(rows)} texts)"
    )
    with rebuilt:
        again = rebuilt.embed([ctx.texts[i] for i in rows])
    ex.record(
        ("+".join(c.cause for c in combo), "setting"),  # one cause, whichever side reproduced
        f"{side.label}: {setting}",
        rows,
        _within(again, other.vectors[rows], ctx.tolerance),
        functools.partial(_cause_of_changes, combo, ctx.a, ctx.b, ctx.texts[rows[0]]),
        reproduced=f"{side.label} rebuilt with {setting} reproduced {other.label}",
    )
    _probe_renormalized(ex, ctx, combo, (side, other), rows, again)


def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def _probe_renormalized(
    ex: _Explainer,
    ctx: _Pair,
    combo: list[ConfigChange],
    sides: tuple[Side, Side],
    rows: list[int],
    again: np.ndarray,
) -> None:
    """Texts the rebuilt side still misses where exactly one side returns unit vectors: do the
    settings plus normalization explain them (default bcembedding on a non-normalizing model)?"""
    side, other = sides
    left = set(ex.remaining)
    picks = [j for j, i in enumerate(rows) if i in left]
    if not picks:
        return
    x, y = again[picks], other.vectors[[rows[j] for j in picks]]
    unit_x, unit_y = _is_unit(x), _is_unit(y)
    mask = unit_x != unit_y
    if not mask.any():
        return
    tried = [rows[j] for j, take in zip(picks, mask, strict=True) if take]
    unit, raw = (side, other) if unit_x[mask][0] else (other, side)
    extra = ConfigChange(
        "normalization",
        combo[0].side,
        "normalize",
        None,
        f"{unit.label} returns unit vectors, {raw.label} does not.",
        _normalization_fix(unit, raw, ctx.reference.get("normalize")),
    )
    setting = ", ".join(f"{c.key}={c.value}" for c in combo)
    ex.record(
        ("+".join([*(c.cause for c in combo), "normalization"]), "setting"),
        f"{side.label}: {setting}, then unit re-normalization",
        tried,
        _within(_unit(x[mask]), _unit(y[mask]), ctx.tolerance),
        functools.partial(_cause_of_changes, [*combo, extra], ctx.a, ctx.b, ctx.texts[tried[0]]),
        reproduced=f"{side.label} rebuilt with {setting} reproduced {other.label} up to vector "
        "length",
    )


def _probe_combined(ex: _Explainer, ctx: _Pair, changes: list[ConfigChange]) -> None:
    """Texts no single change explains: change two (then three) settings of one side at once."""
    for side_name in ("a", "b"):
        mine = [c for c in changes if c.side == side_name]
        for size in range(2, min(MAX_COMBINED, len(mine)) + 1):
            for combo in itertools.combinations(mine, size):
                if len({c.key for c in combo}) == size:
                    _probe_settings(ex, ctx, list(combo))


def _cause_of_changes(combo: list[ConfigChange], a: Side, b: Side, sample: str) -> Cause:
    causes = [c.cause for c in combo]
    tokens = _token_note(a, b, sample) if "truncation" in causes else []
    stages = [STAGE_OF[c] for c in causes if STAGE_OF[c]]
    stage = min(stages, key=STAGE_ORDER.index) if stages else None
    fixes = list(dict.fromkeys(c.fix for c in combo))
    return Cause(
        causes[0],
        stage,
        " ".join(c.detail for c in combo),
        0,
        "; and ".join(fixes),
        tokens=tokens,
        also=causes[1:],
    )


def _probe_transforms(ex: _Explainer, ctx: _Pair) -> None:
    """Preprocessing: does X(x) equal Y(T(x))? Then X applies T."""
    a, b = ctx.a, ctx.b
    for transform in TEXT_TRANSFORMS:
        for doer, other in ((a, b),) if ctx.frozen_a else ((a, b), (b, a)):
            rows = [i for i in ex.remaining if transform.apply(ctx.texts[i]) != ctx.texts[i]]
            if not rows:
                continue
            again = other.adapter.embed([transform.apply(ctx.texts[i]) for i in rows])
            ex.record(
                (transform.cause, doer.label),
                f"{doer.label}: {transform.name}",
                rows,
                _within(doer.vectors[rows], again, ctx.tolerance),
                functools.partial(
                    _transform_cause, transform, doer, other, a, b, ctx.texts[rows[0]]
                ),
                reproduced=f"{other.label} given {transform.name}(text) reproduced {doer.label}",
            )


def _transform_cause(
    t: TextTransform, doer: Side, other: Side, a: Side, b: Side, sample: str
) -> Cause:
    return Cause(
        t.cause,
        STAGE_OF[t.cause],
        f"{doer.label} {t.says} before tokenizing, {other.label} does not (e.g. {sample[:40]!r}).",
        0,
        _transform_fix(t.name, doer, other),
        tokens=_token_note(a, b, sample),
    )


def _probe_noise(ex: _Explainer, ctx: _Pair, pair: PairResult) -> dict[str, dict[str, float]]:
    """The noise floor (what batching alone changes); texts within twice it are batch noise."""
    a, b = ctx.a, ctx.b
    if ctx.frozen_a:
        return {}
    ctx.progress(f"diagnose {a.label} vs {b.label}: noise floor")
    floor = {s.label: noise_floor(s.adapter, ctx.texts, s.vectors) for s in (a, b)}
    limit = {m: 2 * max(floor[a.label][m], floor[b.label][m]) for m in METRICS}
    if not ex.remaining or not all(np.isfinite(list(limit.values()))):
        return floor
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
            evidence=INFERRED,
            basis=(
                "no probe reproduced these texts; their deltas are within twice the noise "
                "floor measured by re-embedding the first texts one at a time"
            ),
        ),
    )
    return floor


def _unknown(ex: _Explainer, a: Side, b: Side) -> Cause:
    tried = [p["probe"] for p in ex.probes if "skipped" not in p]
    return Cause(
        "unknown",
        None,
        f"{len(ex.remaining)} failing texts match no known cause between {a.label} and {b.label}.",
        len(ex.remaining),
        "no setting or preprocessing step parity knows reproduces these texts: check that "
        "both sides load the same model files, and report the texts as a new cause",
        indices=list(ex.remaining),
        evidence=INFERRED,
        basis=f"no probe reproduced the other side on these texts (tried: "
        f"{', '.join(tried) or 'none applied'})",
    )


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


def _transform_fix(name: str, doer: Side, other: Side) -> str:
    if not doer.fixable:
        return f"{name} texts before {other.label} to restore the recorded behaviour"
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
