"""Probes on the returned vectors alone: NaN/Inf rows, and unit versus raw vector lengths."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from parity.diagnose.causes import Cause, Explainer, PairContext, Side, is_unit, unit, within
from parity.diagnose.probes import STAGE_OF

STAGES = ("token_embeddings", "pooled", "normalized")


def probe_non_finite(ex: Explainer, ctx: PairContext) -> None:
    """NaN/Inf rows are findings of their own, measured, and no other probe sees them."""
    for side in (ctx.a, ctx.b):
        rows = [i for i in ex.remaining if not np.isfinite(side.vectors[i]).all()]
        if rows:
            ex.record(
                ("non-finite", side.label),
                f"{side.label}: NaN/Inf in the output",
                rows,
                np.ones(len(rows), dtype=bool),
                functools.partial(non_finite_cause, side, ctx.texts[rows[0]], len(rows)),
            )


def non_finite_cause(side: Side, sample: str, count: int) -> Cause:
    """The stage only where re-running the stages shows the NaN/Inf; fp16 advice only for a side
    that runs float16, and as a certainty only where the overflow was reproduced."""
    dtype = side.config.get("dtype")
    stage, where = non_finite_stage(side, sample)
    return Cause(
        "non-finite",
        stage,
        f"{side.label} returns NaN or Inf for {count} texts (dtype {dtype}); {where}.",
        0,
        _non_finite_fix(side, dtype, reproduced=stage is not None),
        basis=f"{side.label}'s output holds NaN or Inf for {count} failing texts (seen in the vectors)",
    )


def _non_finite_fix(side: Side, dtype: Any, *, reproduced: bool) -> str:
    option = type(side.adapter).all_options().get("dtype")
    if not side.fixable:
        return "the recorded vectors hold NaN/Inf for these texts: record finite ones"
    if dtype == "float16" and option is not None:
        wider = " or ".join(
            d for d in ("float32", "bfloat16") if not option.choices or d in option.choices
        )
        if reproduced:
            return f"fp16 overflow: set dtype={wider} on {side.label}"
        return (
            f"{side.label} runs float16, which overflows past 65504: try dtype={wider} on it "
            "(the NaN/Inf was not reproduced on re-run, so overflow is not confirmed)"
        )
    if dtype == "float32":
        return (
            f"{side.label} runs float32, so this is not fp16 overflow: check its weights and "
            "its inputs for these texts"
        )
    return (
        f"run {side.label} with dtype=float32 to see whether it overflows, and check its "
        "inputs for these texts"
    )


def non_finite_stage(side: Side, text: str) -> tuple[str | None, str]:
    """The first stage whose output is not finite on re-run, and a note saying what was seen."""
    seen = "seen in the returned vectors"
    stages = getattr(side.adapter, "stages", None)
    if stages is None or not side.fixable:
        return None, f"{seen}; the stages cannot be re-run to locate it"
    try:
        found = stages([text])
    except Exception as exc:  # locating the stage is a nicety; the finding stands without it
        return None, f"{seen}; re-running the stages failed ({type(exc).__name__}: {exc})"
    for stage in STAGES:
        if not np.isfinite(np.asarray(found[stage][0], dtype=np.float64)).all():
            return stage, f"the re-run stages reproduce it, first at {stage}"
    return None, f"{seen} but not reproduced in the stages on re-run"


def probe_normalization(ex: Explainer, ctx: PairContext) -> None:
    """Re-normalize both sides, only on texts where exactly one side returns unit vectors."""
    rows = list(ex.remaining)
    if not rows:
        return
    unit_a, unit_b = is_unit(ctx.a.vectors[rows]), is_unit(ctx.b.vectors[rows])
    if (unit_a == unit_b).all():
        which = "both sides return" if unit_a.all() else "the sides agree on whether they return"
        ex.skip("unit re-normalization", f"{which} unit vectors on every failing text")
        return
    for unit_side, raw, mask in (
        (ctx.a, ctx.b, unit_a & ~unit_b),
        (ctx.b, ctx.a, unit_b & ~unit_a),
    ):
        tried = [i for i, take in zip(rows, mask, strict=True) if take]
        if not tried:
            continue
        x, y = unit(unit_side.vectors[tried]), unit(raw.vectors[tried])
        norms = np.linalg.norm(raw.vectors[tried].astype(np.float64), axis=1)
        ex.record(
            ("normalization", unit_side.label),
            "unit re-normalization",
            tried,
            within(x, y, ctx.tolerance),
            functools.partial(normalization_cause, unit_side, raw, norms, ctx.reference),
            reproduced="both sides scaled to unit length agreed",
        )


def normalization_cause(
    unit_side: Side, raw: Side, norms: np.ndarray, reference: dict[str, Any]
) -> Cause:
    return Cause(
        "normalization",
        STAGE_OF["normalization"],
        f"{unit_side.label} returns unit vectors, {raw.label} does not (norms "
        f"{norms.min():.3g} to {norms.max():.3g}).",
        0,
        normalization_fix(unit_side, raw, reference.get("normalize")),
    )


def normalization_fix(unit_side: Side, raw: Side, model_normalizes: bool | None) -> str:
    """Point at the side that departs from the model (Normalize module or not); where that side
    has no normalize option, say so and what can be done, never move the side that matches."""
    cosine = "or compare with cosine only (the sides differ only in vector length)"
    if model_normalizes is not None:
        departing, matching = (raw, unit_side) if model_normalizes else (unit_side, raw)
        note = "has a" if model_normalizes else "has no"
        if settable_normalize(departing):
            state = "true" if model_normalizes else "false"
            return f"set normalize={state} on {departing.label} (the model {note} Normalize module)"
        if departing.fixable:
            return _unsettable_fix(departing, matching, model_normalizes, note)
    for side in (raw, unit_side):
        if settable_normalize(side):
            state = "true" if side is raw else "false"
            return f"set normalize={state} on {side.label} to match the other side, {cosine}"
    return f"normalize {raw.label}'s vectors yourself, {cosine}"


def settable_normalize(side: Side) -> bool:
    """A normalize option that applies to this configuration: http's only to protocol=tei (its
    describe() reports normalize there, None over openai, which sends no such field)."""
    options = type(side.adapter).all_options()
    return side.fixable and "normalize" in options and side.config.get("normalize") is not None


def _unsettable_fix(departing: Side, matching: Side, model_normalizes: bool, note: str) -> str:
    """The departing side cannot be set back to the model: name it, and what the side that
    matches the model may do (only to compare against the departing one)."""
    if model_normalizes:
        does, can = "does not normalize its output", "to turn it on"
        what = f"normalize {_owner(departing.label)} vectors to unit length yourself"
    else:
        does, can = "normalizes its output", "to turn it off"
        how = "(normalize=true)" if settable_normalize(matching) else "to unit length yourself"
        what = (
            f"normalize {_owner(matching.label)} vectors {how} only if you compare against "
            f"{departing.label}"
        )
    return (
        f"{departing.label} {does} and has no option {can} (the model {note} Normalize module, "
        f"so {departing.label} is the side that departs); {what}, or compare with cosine"
    )


def _owner(label: str) -> str:
    """sentence-transformers' / custom's."""
    return label + ("'" if label.endswith("s") else "'s")
