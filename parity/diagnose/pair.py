"""diagnose_pair: run the probes in order of evidence on one failing pair, then what is left."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import numpy as np

from parity.adapters import Adapter
from parity.compare import PairResult
from parity.diagnose.causes import (
    INFERRED,
    MEASURED,
    Cause,
    Diagnosis,
    Explainer,
    PairContext,
    ProbeVectors,
    Side,
    model_reference,
    token_note,
    within,
)
from parity.diagnose.noise import noise_floor
from parity.diagnose.opaque import probe_opaque
from parity.diagnose.outputs import probe_non_finite, probe_normalization
from parity.diagnose.probes import STAGE_OF, TEXT_TRANSFORMS, TextTransform
from parity.diagnose.projection import probe_projection
from parity.diagnose.quantization import probe_quantization
from parity.diagnose.rebuild import probe_combined, probe_settings, rebuild, setting_text
from parity.diagnose.settings import ConfigChange, config_changes, config_differences
from parity.metrics import METRICS, Tolerance


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
    others: Sequence[Side] = (),
    probes: ProbeVectors | None = None,
) -> Diagnosis:
    """Explain the failing texts of one pair.

    `frozen_a`: a's vectors were made elsewhere (a baseline) and a's adapter cannot reproduce
    them, so only probes that re-run b and compare with a's vectors are sound; no noise floor.
    A probe that crashes is listed as skipped (with the exception) and its texts stay open."""
    failing = pair.failing_indices()
    ex = Explainer(failing)
    ctx = PairContext(a, b, texts, model, tolerance, progress, frozen_a, model_reference(model))
    if probes is not None:
        ctx.probes = probes  # shared with the run's other pairs
    diff = [
        {"setting": k, "a": va, "b": vb} for k, va, vb in config_differences(a.config, b.config)
    ]
    probe_non_finite(ex, ctx)
    probe_projection(ex, ctx)  # different dimensions explain every text: the rest find none
    probe_normalization(ex, ctx)
    changes = config_changes(a.settings(), b.settings(), ctx.reference)
    ex.probes += changes.skipped
    for change in changes.changes:
        probe_settings(ex, ctx, [change])
    _probe_transforms(ex, ctx)
    probe_combined(ex, ctx, changes.changes)
    for change in changes.changes:
        _probe_transform_with_setting(ex, ctx, change)
    probe_quantization(ex, ctx, others)  # before the noise floor: int8 noise is batch-dependent
    probe_opaque(ex, ctx)  # embed()-only checks (scale; a side without stages: more)
    floor: dict[str, dict[str, float]] = {}
    with ex.guard("noise floor"):
        floor = _probe_noise(ex, ctx, pair)
    causes = list(ex.causes.values())
    if ex.remaining:
        causes.append(_unknown(ex, a, b))
    causes.sort(key=lambda c: -c.explained)
    stage, evidence = _first_stage(ex, ctx, failing, causes)
    return Diagnosis(causes, diff, ex.probes, floor, stage, evidence)


def _first_stage(
    ex: Explainer, ctx: PairContext, failing: list[int], causes: list[Cause]
) -> tuple[str | None, str | None]:
    """The first stage that differs, measured by walking the stages of both sides on a failing
    text, else inferred from the top cause. No walk where it would measure nothing: one adapter
    against itself, or a side whose vectors were recorded elsewhere (its adapter does not give
    them, so its stages say nothing about where they part)."""
    a, b = ctx.a, ctx.b
    finite = [
        i for i in failing if np.isfinite(a.vectors[i]).all() and np.isfinite(b.vectors[i]).all()
    ]
    stage = None
    if a.adapter is b.adapter:
        ex.skip("first differing stage", f"both sides are the same adapter ({b.label})")
    elif ctx.frozen_a:
        ex.skip("first differing stage", f"{a.label}'s vectors were recorded elsewhere")
    elif finite:
        with ex.guard("first differing stage"):
            stage = first_differing_stage(a, b, ctx.texts[finite[0]], ctx.tolerance)
    if stage is not None:
        return stage, MEASURED
    if causes and causes[0].stage is not None:
        return causes[0].stage, INFERRED
    return None, None


def _probe_transforms(ex: Explainer, ctx: PairContext) -> None:
    """Preprocessing: does X(x) equal Y(T(x))? Then X applies T."""
    a, b = ctx.a, ctx.b
    for transform in TEXT_TRANSFORMS:
        for doer, other in ((a, b),) if ctx.frozen_a else ((a, b), (b, a)):
            rows = [i for i in ex.remaining if transform.apply(ctx.texts[i]) != ctx.texts[i]]
            if not rows:
                continue
            with ex.guard(f"{doer.label}: {transform.name}"):
                moved = [transform.apply(ctx.texts[i]) for i in rows]
                again = ctx.probes.embed(other.adapter, moved)
                ex.record(
                    (transform.cause, doer.label),
                    f"{doer.label}: {transform.name}",
                    rows,
                    within(doer.vectors[rows], again, ctx.tolerance),
                    functools.partial(
                        _transform_cause, transform, doer, other, a, b, ctx.texts[rows[0]]
                    ),
                    reproduced=f"{other.label} given {transform.name}(text) reproduced "
                    f"{doer.label}",
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
        tokens=token_note(a, b, sample),
    )


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


def _probe_transform_with_setting(ex: Explainer, ctx: PairContext, change: ConfigChange) -> None:
    """Texts neither a setting nor a preprocessing step explains alone: rebuild one side with one
    changed setting and apply a transform to one side's input (one side strips and pools by CLS,
    the other neither). One rebuild per change, shared by every transform."""
    side = ctx.a if change.side == "a" else ctx.b
    if not ex.remaining or (ctx.frozen_a and side is ctx.a):
        return
    transforms = [
        t
        for t in TEXT_TRANSFORMS
        if any(t.apply(ctx.texts[i]) != ctx.texts[i] for i in ex.remaining)
    ]
    if not transforms:
        return
    with ex.guard(f"{side.label}: {setting_text([change])}, with preprocessing"):
        with rebuild(side, [change], ctx.model) as rebuilt:
            for transform in transforms:
                for doer in (ctx.a,) if ctx.frozen_a else (ctx.a, ctx.b):
                    _transform_with_setting(ex, ctx, change, transform, doer, (side, rebuilt))


def _transform_with_setting(
    ex: Explainer,
    ctx: PairContext,
    change: ConfigChange,
    transform: TextTransform,
    doer: Side,
    rebuilt: tuple[Side, Adapter],
) -> None:
    """Does `doer` (the rebuilt side's setting changed) equal the other side given T(text)?"""
    rows = [i for i in ex.remaining if transform.apply(ctx.texts[i]) != ctx.texts[i]]
    if not rows:
        return
    side, adapter = rebuilt
    other = ctx.b if doer is ctx.a else ctx.a
    texts = [ctx.texts[i] for i in rows]
    moved = [transform.apply(t) for t in texts]
    left = ctx.probes.embed(adapter, texts) if doer is side else doer.vectors[rows]
    right = ctx.probes.embed(adapter if other is side else other.adapter, moved)
    setting = setting_text([change])
    ex.record(
        (f"{transform.cause}+{change.cause}", doer.label),
        f"{side.label}: {setting}, {doer.label}: {transform.name}",
        rows,
        within(left, right, ctx.tolerance),
        functools.partial(_transform_setting_cause, transform, doer, other, change, ctx, texts[0]),
        reproduced=(
            f"{side.label} rebuilt with {setting} and given {transform.name}(text) reproduced "
            f"{doer.label}"
            if other is side
            else f"{side.label} rebuilt with {setting} matched {other.label} given "
            f"{transform.name}(text)"
        ),
    )


def _transform_setting_cause(
    t: TextTransform, doer: Side, other: Side, change: ConfigChange, ctx: PairContext, sample: str
) -> Cause:
    cause = _transform_cause(t, doer, other, ctx.a, ctx.b, sample)
    cause.detail += " " + change.detail
    cause.fix += "; and " + change.fix
    cause.also = [change.cause]
    return cause


def _probe_noise(ex: Explainer, ctx: PairContext, pair: PairResult) -> dict[str, dict[str, float]]:
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


def _unknown(ex: Explainer, a: Side, b: Side) -> Cause:
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
        if not within(x[stage], y[stage], tolerance).all():
            return stage
    return None
