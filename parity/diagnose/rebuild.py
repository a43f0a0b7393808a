"""Probes that rebuild one side with the other side's settings (one, then several at once)."""

from __future__ import annotations

import functools
import itertools

import numpy as np

from parity.adapters import Adapter, AdapterSpec
from parity.diagnose.causes import (
    STAGE_ORDER,
    Cause,
    Explainer,
    PairContext,
    Side,
    is_unit,
    token_note,
    unit,
    within,
)
from parity.diagnose.outputs import normalization_fix
from parity.diagnose.probes import STAGE_OF
from parity.diagnose.settings import ConfigChange

MAX_COMBINED = 3  # settings changed together in one combined probe, at most


def setting_text(combo: list[ConfigChange]) -> str:
    """The changed options as a user would type them: "max_length=256, pooling=mean"."""
    return ", ".join(f"{c.key}={c.value}" for c in combo)


def rebuild(side: Side, combo: list[ConfigChange], model: str) -> Adapter:
    """`side`'s adapter built again (not loaded) with the options of `combo` changed; its load
    takes the model the run holds where the changed options are not read by loading."""
    options = {**side.spec.options, **{c.key: str(c.value) for c in combo}}
    adapter = AdapterSpec(side.spec.name, options, side.label).build(model)
    adapter.reuse_loaded = True  # the weights the run loaded, where these options keep them
    return adapter


def probe_settings(ex: Explainer, ctx: PairContext, combo: list[ConfigChange]) -> None:
    """Rebuild one side with the changed options; does it now give the other side's vectors?
    A rebuilt adapter that crashes costs only this probe (listed as skipped, with why)."""
    if not ex.remaining:
        return
    side_name = combo[0].side
    side, other = (ctx.a, ctx.b) if side_name == "a" else (ctx.b, ctx.a)
    setting = setting_text(combo)
    if ctx.frozen_a and side_name == "a":
        ex.skip(
            f"{side.label}: {setting}",
            f"{side.label}'s vectors were recorded elsewhere; only {other.label} is rebuilt",
        )
        return
    with ex.guard(f"{side.label}: {setting}"):
        _rebuild_and_record(ex, ctx, combo, side, other)


def _rebuild_and_record(
    ex: Explainer, ctx: PairContext, combo: list[ConfigChange], side: Side, other: Side
) -> None:
    rows = list(ex.remaining)
    setting = setting_text(combo)
    rebuilt = rebuild(side, combo, ctx.model)
    ctx.progress(
        f"diagnose {ctx.a.label} vs {ctx.b.label}: trying {setting} on {side.label} "
        f"({len(rows)} texts)"
    )
    with rebuilt:
        again = ctx.probes.embed(rebuilt, [ctx.texts[i] for i in rows])
    ex.record(
        ("+".join(c.cause for c in combo), "setting"),  # one cause, whichever side reproduced
        f"{side.label}: {setting}",
        rows,
        within(again, other.vectors[rows], ctx.tolerance),
        functools.partial(cause_of_changes, combo, ctx.a, ctx.b, ctx.texts[rows[0]]),
        reproduced=f"{side.label} rebuilt with {setting} reproduced {other.label}",
    )
    _probe_renormalized(ex, ctx, combo, (side, other), rows, again)


def _probe_renormalized(
    ex: Explainer,
    ctx: PairContext,
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
    unit_x, unit_y = is_unit(x), is_unit(y)
    mask = unit_x != unit_y
    if not mask.any():
        return
    tried = [rows[j] for j, take in zip(picks, mask, strict=True) if take]
    unit_side, raw = (side, other) if unit_x[mask][0] else (other, side)
    extra = ConfigChange(
        "normalization",
        combo[0].side,
        "normalize",
        None,
        f"{unit_side.label} returns unit vectors, {raw.label} does not.",
        normalization_fix(unit_side, raw, ctx.reference.get("normalize")),
    )
    setting = setting_text(combo)
    ex.record(
        ("+".join([*(c.cause for c in combo), "normalization"]), "setting"),
        f"{side.label}: {setting}, then unit re-normalization",
        tried,
        within(unit(x[mask]), unit(y[mask]), ctx.tolerance),
        functools.partial(cause_of_changes, [*combo, extra], ctx.a, ctx.b, ctx.texts[tried[0]]),
        reproduced=f"{side.label} rebuilt with {setting} reproduced {other.label} up to vector "
        "length",
    )


def probe_combined(ex: Explainer, ctx: PairContext, changes: list[ConfigChange]) -> None:
    """Texts no single change explains: change two (then three) settings of one side at once."""
    for side_name in ("a", "b"):
        mine = [c for c in changes if c.side == side_name]
        for size in range(2, min(MAX_COMBINED, len(mine)) + 1):
            for combo in itertools.combinations(mine, size):
                if len({c.key for c in combo}) == size:
                    probe_settings(ex, ctx, list(combo))


def cause_of_changes(combo: list[ConfigChange], a: Side, b: Side, sample: str) -> Cause:
    causes = [c.cause for c in combo]
    tokens = token_note(a, b, sample) if "truncation" in causes else []
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
