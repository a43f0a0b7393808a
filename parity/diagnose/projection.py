"""Sides of different dimensions: a Dense projection applied on one side only (measured by
loading the model without its Dense layers), or a different model (inferred)."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from parity.diagnose.causes import (
    INFERRED,
    Cause,
    Explainer,
    PairContext,
    Side,
    is_unit,
    unit,
    within,
)
from parity.diagnose.probes import STAGE_OF


@dataclass(frozen=True)
class DenseChain:
    """The Dense modules of a sentence-transformers model directory, in order."""

    model: str
    paths: list[str]
    in_features: int
    out_features: int


def dense_chain(model: str) -> DenseChain | None:
    """The model's Dense layers (modules.json), or None when it has none or cannot be read."""
    root = Path(model)
    try:
        modules = json.loads((root / "modules.json").read_text(encoding="utf-8"))
        dense = [m for m in modules if str(m.get("type", "")).endswith("Dense")]
        configs = [
            json.loads((root / m["path"] / "config.json").read_text(encoding="utf-8"))
            for m in dense
        ]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if not configs:
        return None
    paths = [str(m["path"]) for m in dense]
    return DenseChain(
        model, paths, int(configs[0]["in_features"]), int(configs[-1]["out_features"])
    )


def probe_projection(ex: Explainer, ctx: PairContext) -> bool:
    """Sides of different dimensions: a Dense projection one side applies and the other not
    (measured when the model loaded without its Dense layers reproduces the wider side), or a
    different model (inferred). True when the dimensions differ (every text is then explained)."""
    dim_a, dim_b = ctx.a.vectors.shape[1], ctx.b.vectors.shape[1]
    if dim_a == dim_b or not ex.remaining:
        return dim_a != dim_b
    wide, narrow = (ctx.a, ctx.b) if dim_a > dim_b else (ctx.b, ctx.a)
    chain = _matching_chain(ctx, wide.vectors.shape[1], narrow.vectors.shape[1])
    crash = None
    if chain is not None:
        probe = f"{chain.model} without {', '.join(chain.paths)}"
        try:
            _reproduce_projection(ex, ctx, chain, wide, narrow)
        except Exception as exc:  # as ex.guard: the probe is skipped, the finding stands
            crash = f"{type(exc).__name__}: {exc}"
            ex.skip(probe, crash, crashed=True)
    if ex.remaining:
        rows = list(ex.remaining)
        ex.record(
            ("projection", "dimensions: inferred") if chain else ("model-files", "dimensions"),
            "dimensions",
            rows,
            np.ones(len(rows), dtype=bool),
            functools.partial(_unreproduced_cause, chain, wide, narrow, crash),
        )
    return True


def _unreproduced_cause(
    chain: DenseChain | None, wide: Side, narrow: Side, crash: str | None
) -> Cause:
    """The texts the model without its Dense layers did not reproduce (or could not be run
    on): a projection only inferred from the shapes; with no chain, another model."""
    cause = _dimension_cause(chain, wide, narrow)
    if chain is None:
        return cause
    layers = ", ".join(chain.paths)
    if crash is None:
        why = f"the model loaded without {layers} did not reproduce {wide.label} on these texts"
    else:
        why = f"the model without {layers} could not be run to check ({crash})"
    cause.evidence = INFERRED
    cause.basis += f"; {why}, so that this layer is the difference is inferred"
    return cause


def _matching_chain(ctx: PairContext, wide: int, narrow: int) -> DenseChain | None:
    """A Dense chain mapping `wide` to `narrow` dimensions in a model either side loads."""
    for model in dict.fromkeys([ctx.a.adapter.model, ctx.b.adapter.model, ctx.model]):
        chain = dense_chain(model) if model else None
        if chain and (chain.in_features, chain.out_features) == (wide, narrow):
            return chain
    return None


def _reproduce_projection(
    ex: Explainer, ctx: PairContext, chain: DenseChain, wide: Side, narrow: Side
) -> None:
    from sentence_transformers import SentenceTransformer

    from parity.adapters.sbert import load_sentence_transformer

    rows = list(ex.remaining)
    full = load_sentence_transformer(chain.model, "cpu", "float32", "auto")
    kept = [m for m in full if type(m).__name__ != "Dense"]
    without = SentenceTransformer(modules=kept, device="cpu")
    again = without.encode([ctx.texts[i] for i in rows], convert_to_numpy=True)
    target = wide.vectors[rows]
    if is_unit(target).all() and not is_unit(again).all():
        again = unit(again)  # the wider side normalizes what it pooled
    ex.record(
        ("projection", "dimensions"),
        f"{chain.model} without its Dense layers",
        rows,
        within(again, target, ctx.tolerance),
        functools.partial(_dimension_cause, chain, wide, narrow),
        reproduced=f"the model loaded without {', '.join(chain.paths)} reproduced {wide.label}",
    )


def _dimension_cause(chain: DenseChain | None, wide: Side, narrow: Side) -> Cause:
    dims = f"{narrow.label} returns {narrow.vectors.shape[1]} dimensions, {wide.label} "
    dims += f"{wide.vectors.shape[1]}"
    if chain is None:
        return Cause(
            "model-files",
            STAGE_OF["model-files"],
            f"{dims}: they do not run the same model (no Dense layer of the model maps one to "
            "the other).",
            0,
            f"load the same model on both sides (check model= on {wide.label} and "
            f"{narrow.label}, or which model the server serves)",
            evidence=INFERRED,
            basis="the dimensions differ and no Dense layer in the model directory explains it",
        )
    layers = ", ".join(chain.paths)
    cause = Cause(
        "projection",
        STAGE_OF["projection"],
        f"{dims}: the model's {layers} ({chain.in_features} -> {chain.out_features}) is applied "
        f"by {narrow.label} only.",
        0,
        f"apply the model's {layers} after pooling on {wide.label} (load the model with all "
        "of modules.json, as sentence-transformers does)",
    )
    cause.basis = (
        f"the model's {layers} maps {chain.in_features} to {chain.out_features} dimensions, "
        "the two sides' dimensions"
    )
    return cause
