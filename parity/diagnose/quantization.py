"""The `quantization` cause: one side runs a quantized graph, the other does not."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from parity.diagnose.causes import INFERRED, Cause, Explainer, PairContext, Side, within
from parity.diagnose.probes import STAGE_OF
from parity.metrics import deltas


def is_quantized(side: Side) -> bool:
    """Whether describe() says the side's graph holds quantized operators."""
    return bool(side.config.get("quantized"))


def probe_quantization(ex: Explainer, ctx: PairContext, others: Sequence[Side] = ()) -> None:
    """Texts left open where exactly one side is quantized. Measured where another adapter of the
    run, of the quantized side's kind but not quantized (its fp32 export), reproduces the
    unquantized side on them; else inferred from the quantized operators in the graph."""
    if not ex.remaining or is_quantized(ctx.a) == is_quantized(ctx.b):
        return
    quantized, plain = (ctx.a, ctx.b) if is_quantized(ctx.a) else (ctx.b, ctx.a)
    references = [
        s
        for s in others
        if type(s.adapter) is type(quantized.adapter)
        and s.config.get("quantized") is False
        and s.label not in (ctx.a.label, ctx.b.label)
    ]
    for reference in references:
        rows = list(ex.remaining)
        if not rows:
            return
        ex.record(
            ("quantization", quantized.label),
            f"{reference.label} (not quantized) in place of {quantized.label}",
            rows,
            within(reference.vectors[rows], plain.vectors[rows], ctx.tolerance),
            functools.partial(quantization_cause, quantized, plain, ctx, rows),
            reproduced=f"{reference.label}, the same kind of graph without quantization, "
            f"reproduced {plain.label}",
        )
    rows = list(ex.remaining)
    if rows and not references:
        ex.record(
            ("quantization", quantized.label),
            f"{quantized.label}: quantized operators",
            rows,
            np.ones(len(rows), dtype=bool),
            functools.partial(_inferred_cause, quantized, plain, ctx, rows),
        )


def quantization_cause(quantized: Side, plain: Side, ctx: PairContext, rows: list[int]) -> Cause:
    """The cause, its detail naming the operators and its fix the deltas quantization costs."""
    found = deltas(quantized.vectors[rows], plain.vectors[rows])
    worst = {metric: float(np.nanmax(values)) for metric, values in found.items()}
    return Cause(
        "quantization",
        STAGE_OF["quantization"],
        f"{quantized.label} runs a quantized graph ({operator_text(quantized)}), "
        f"{plain.label} does not; quantization moves these texts by up to max_abs "
        f"{worst['max_abs']:.3g}, cosine {worst['cosine']:.3g}.",
        0,
        _fix(quantized, plain, ctx, worst),
    )


def _inferred_cause(quantized: Side, plain: Side, ctx: PairContext, rows: list[int]) -> Cause:
    cause = quantization_cause(quantized, plain, ctx, rows)
    cause.evidence = INFERRED
    holds = f"the graph of {quantized.label} holds {operator_text(quantized)}"
    if type(plain.adapter) is type(quantized.adapter):
        cause.basis = f"{holds}; {plain.label} runs the same kind of graph without them"
    else:
        cause.basis = (
            f"{holds}, {plain.label} runs no quantized graph; no unquantized export of the model "
            f"ran alongside to measure it (add one, e.g. --adapter onnx:model=FP32_DIR)"
        )
    return cause


def operator_text(side: Side) -> str:
    """'MatMulInteger x36, DynamicQuantizeLinear x25' from describe()['quantized_operators']."""
    operators = side.config.get("quantized_operators") or {}
    return ", ".join(f"{name} x{count}" for name, count in operators.items()) or "quantized ops"


def _fix(quantized: Side, plain: Side, ctx: PairContext, worst: dict[str, float]) -> str:
    limits = {metric: getattr(ctx.tolerance, metric) for metric in ctx.tolerance.active()}
    over = [f"{m}={worst[m]:.2g}" for m, limit in limits.items() if worst[m] > limit]
    return (
        f"this quantized graph does not match the unquantized model within "
        f"{', '.join(f'{m} {v:g}' for m, v in limits.items())}: check the export itself by "
        f"comparing an unquantized export with {plain.label}, compare {quantized.label} against "
        f"a baseline of its own to catch drift, or, if its accuracy is acceptable, widen the "
        f"tolerance to the measured {', '.join(over) or 'deltas'}"
    )
