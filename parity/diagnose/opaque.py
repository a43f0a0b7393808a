"""Checks for stacks that expose no stages (HTTP, ONNX, fastembed, plugins): scale, truncation
lengths, tokenizer normalization, batch dependence and nondeterminism, through `embed()` alone
(dimensions: projection.py).

Every check runs only on failing texts nothing has explained yet; those that re-embed take at
most SAMPLE texts to establish a cause, then test the rest of the open texts (up to EXTEND)."""

from __future__ import annotations

import dataclasses
import functools
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from parity.adapters import Adapter
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
from parity.diagnose.outputs import normalization_fix, settable_normalize
from parity.diagnose.probes import STAGE_OF
from parity.metrics import Tolerance, deltas

SAMPLE = 8  # texts re-embedded to establish a cause
EXTEND = 64  # open texts tested once a cause is established, at most
RATIO_SPREAD = 1e-3  # |ratio / median - 1| within this counts as one constant factor
# a text alone must move more than NOISE_FACTOR times what the other side's texts move alone
# to be batch dependence, not noise; and a vector must move more than float32 rounding (~1e-7
# alone vs batched, or between two identical calls, measured on MiniLM and the tiny models)
NOISE_FACTOR = 10.0
FLOAT32_FLOOR = 1e-6
# a constant factor must depart from 1 by more than this (and NOISE_FACTOR times the spread of
# the texts' ratios): noise on raw vectors leaves ratios within ~3e-4 of 1 (norm-8 vectors,
# 2e-3 noise, 384 dimensions)
FACTOR_FLOOR = 1e-3


def is_opaque(adapter: Adapter) -> bool:
    """A side that cannot show its stages (everything but `custom`: HTTP, ONNX, fastembed, the
    framework wrappers, plugins): where it departs can only be probed through `embed()`."""
    return getattr(adapter, "stages", None) is None


def probe_opaque(ex: Explainer, ctx: PairContext) -> None:
    """The checks on the vectors alone for every pair, then, where a side is opaque, the checks
    that re-embed: nondeterminism first (the others assume a side repeats itself)."""
    probe_factor(ex, ctx)
    if not ex.remaining or not (is_opaque(ctx.a.adapter) or is_opaque(ctx.b.adapter)):
        return
    sides = [ctx.b] if ctx.frozen_a else [ctx.a, ctx.b]
    # once every text is explained nothing runs: embed([]) raises, and a probe on no texts
    # would be listed as skipped with that error
    for side in sides:
        with ex.guard(f"{side.label}: the same request twice"):
            if ex.remaining:
                _probe_repeat(ex, ctx, side)
    for short, other in ((ctx.a, ctx.b), (ctx.b, ctx.a)):
        if ex.remaining and any(other is side for side in sides):  # only a side we can re-run
            with ex.guard(f"{other.label}: texts cut where {short.label} truncates"):
                probe_truncation(ex, ctx, short, other)
    alone: dict[str, dict[int, np.ndarray]] = {side.label: {} for side in sides}
    for side in sides:
        with ex.guard(f"{side.label}: each text alone"):
            if ex.remaining:
                _probe_alone(ex, ctx, side, alone)
    if not ex.remaining:
        return
    if ctx.frozen_a:
        ex.skip("tokenizer normalization", f"{ctx.a.label}'s vectors were recorded elsewhere")
        return
    for transform in TOKENIZER_TRANSFORMS:
        with ex.guard(f"tokenizer: {transform.name}"):
            _probe_tokenizer(ex, ctx, transform)


# --- a constant factor --------------------------------------------------------------------


def constant_factor(x: np.ndarray, y: np.ndarray, tolerance: Tolerance) -> tuple[np.ndarray, float]:
    """Per row: x is `ratio` times y within tolerance, with one ratio for all rows (the median
    |x| / |y| of the rows whose directions agree; each row's within RATIO_SPREAD of it) that
    noise cannot explain (|ratio - 1| above FACTOR_FLOOR and NOISE_FACTOR times the rows'
    spread); and that ratio (nan when none)."""
    nx = np.linalg.norm(x.astype(np.float64), axis=1)
    ny = np.linalg.norm(y.astype(np.float64), axis=1)
    finite = np.isfinite(nx) & np.isfinite(ny) & (nx > 0) & (ny > 0)
    none = np.zeros(len(x), dtype=bool), float("nan")
    if not finite.any():
        return none
    aligned = np.zeros(len(x), dtype=bool)  # same directions: the rows the ratio is taken on
    aligned[finite] = within(unit(x[finite]), unit(y[finite]), tolerance)
    if not aligned.any():
        return none
    ratio = np.where(aligned, nx / np.where(finite, ny, 1.0), np.nan)
    median = float(np.nanmedian(ratio))
    with np.errstate(invalid="ignore"):
        near = aligned & (np.abs(ratio / median - 1.0) <= RATIO_SPREAD)
    # unit-scaling alone would hide noise (norm-8 vectors shrink it eightfold) and call any
    # near-1 ratio a factor: the measured factor must reproduce x from y itself
    ok = near & within(x.astype(np.float64), median * y.astype(np.float64), tolerance)
    if not ok.any():
        return none
    spread = float(np.max(np.abs(ratio[ok] / median - 1.0)))
    if abs(median - 1.0) <= max(FACTOR_FLOOR, NOISE_FACTOR * spread):
        return none  # a ratio this close to 1 is noise, not a scale
    return ok, median


def probe_factor(ex: Explainer, ctx: PairContext) -> None:
    """Vectors that differ by one constant factor (directions equal): normalization, measured
    from the vectors. Texts where exactly one side is unit are the unit re-normalization's."""
    rows = list(ex.remaining)
    if not rows:
        return
    ok, ratio = constant_factor(ctx.a.vectors[rows], ctx.b.vectors[rows], ctx.tolerance)
    if not ok.any():
        return  # no text that one factor, clear of noise, carries from b to a
    ex.record(
        ("normalization", "factor"),
        "a constant factor",
        rows,
        ok,
        functools.partial(_factor_cause, ctx, rows, ratio),
        reproduced=f"{ctx.b.label}'s vectors times {ratio:.4g} reproduced {ctx.a.label} "
        f"(each text's length ratio within {RATIO_SPREAD:g} of it)",
    )


def _factor_cause(ctx: PairContext, rows: list[int], ratio: float) -> Cause:
    a, b = ctx.a, ctx.b
    return Cause(
        "normalization",
        STAGE_OF["normalization"],
        f"{a.label}'s vectors are {b.label}'s scaled by a constant factor {ratio:.4g}: same "
        "directions, different lengths.",
        0,
        factor_fix(a, b, ratio, ctx.reference.get("normalize"), rows),
    )


def factor_fix(
    a: Side, b: Side, ratio: float, model_normalizes: bool | None, rows: list[int] | None = None
) -> str:
    """What to change when a's vectors are b's times `ratio` (on `rows`; default all). The rule
    of normalization_fix: never move a side that matches the model's configuration (Normalize
    module or not), and name only a normalize option the side has in its configuration."""
    take = slice(None) if rows is None else rows
    unit_a, unit_b = bool(is_unit(a.vectors[take]).all()), bool(is_unit(b.vectors[take]).all())
    if unit_a != unit_b:  # one side unit, the other a multiple of it: unit vs raw
        unit_side, raw = (a, b) if unit_a else (b, a)
        return normalization_fix(unit_side, raw, model_normalizes)
    cosine = "or compare with cosine only"
    if model_normalizes and not unit_a:  # neither returns unit vectors: both depart
        steps = [_normalize_step(s) for s in (a, b) if s.fixable]
        why = "the model has a Normalize module and neither side returns unit vectors"
        return f"{'; '.join(steps)} ({why})" if steps else f"normalize both sides, {cosine}"
    # the model (if known) returns raw vectors: normalize=true would move a side away from it
    matching = [
        s for s in (a, b) if model_normalizes is False and s.config.get("normalize") is False
    ]
    if len(matching) == 1:
        match = matching[0]
        depart, times = (b, 1.0 / ratio) if match is a else (a, ratio)
        return (
            f"{depart.label} returns {_owner(match.label)} vectors times {times:.4g} (the model "
            f"has no Normalize module and {match.label}, normalize=false, matches it): find "
            f"where {depart.label} rescales its output and remove that, {cosine}"
        )
    known = "is not known here"
    if model_normalizes is not None:
        known = f"has {'a' if model_normalizes else 'no'} Normalize module"
    return (
        f"one side rescales its output (the model {known}, and neither side is shown to "
        f"match it): find which and remove that, {cosine}"
    )


def _normalize_step(side: Side) -> str:
    if side.config.get("normalize") is True:  # it says it normalizes, yet its lengths are not 1
        return f"find where {side.label} rescales its output after normalizing (normalize=true)"
    if settable_normalize(side):
        return f"set normalize=true on {side.label}"
    why = "its protocol has no" if "protocol" in side.config else "it has no"
    return (
        f"normalize {_owner(side.label)} vectors to unit length yourself ({why} normalize option)"
    )


def _owner(label: str) -> str:
    return label + ("'" if label.endswith("s") else "'s")


# --- truncation lengths --------------------------------------------------------------------


def cut_at(tokenizer: Any, text: str, limit: int) -> str | None:
    """`text` cut after the tokens a tokenizer keeps when it truncates at `limit` (special
    tokens included), or None when it keeps the whole text."""
    keep = limit - int(tokenizer.num_special_tokens_to_add(pair=False))
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    offsets = encoded["offset_mapping"]
    if keep <= 0 or len(offsets) <= keep:
        return None
    return text[: int(offsets[keep - 1][1])]


def probe_truncation(ex: Explainer, ctx: PairContext, short: Side, other: Side) -> None:
    """`short` reports a max_length, `other` none or a longer one, and neither can be rebuilt
    with another: does `other` given each text cut at `short`'s limit reproduce `short`?"""
    limit, theirs = short.config.get("max_length"), other.config.get("max_length")
    if not isinstance(limit, int) or (isinstance(theirs, int) and theirs <= limit):
        return
    model = next((m for m in (short.adapter.model, ctx.model) if Path(m).is_dir()), None)
    if model is None or not ex.remaining:
        return
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model, local_files_only=True)
    cuts = {i: cut_at(tokenizer, ctx.texts[i], limit) for i in ex.remaining}
    rows = [i for i, cut in cuts.items() if cut is not None][:EXTEND]
    if not rows:
        return
    again = other.adapter.embed([str(cuts[i]) for i in rows])
    ex.record(
        ("truncation", short.label),
        f"{other.label}: texts cut at {limit} tokens",
        rows,
        within(again, short.vectors[rows], ctx.tolerance),
        functools.partial(_truncation_cause, short, other, limit, ctx.reference.get("max_length")),
        reproduced=f"{other.label} given each text cut at {limit} tokens reproduced {short.label}",
    )


def _truncation_cause(short: Side, other: Side, limit: int, model_limit: Any) -> Cause:
    keeps = f"at {other.config['max_length']}" if other.config.get("max_length") else "later"
    if model_limit == limit:
        fix = (
            f"truncate at {limit} tokens on {other.label} (the model is configured for "
            f"{limit}), or cut texts to {limit} tokens before sending them there"
        )
    else:
        fix = f"make {short.label} and {other.label} truncate at the same length"
    return Cause(
        "truncation",
        STAGE_OF["truncation"],
        f"{short.label} truncates at {limit} tokens, {other.label} {keeps}.",
        0,
        fix,
    )


# --- the same request twice, and each text alone --------------------------------------------


def _sampled(
    ex: Explainer, test: Callable[[list[int]], np.ndarray]
) -> tuple[list[int], np.ndarray]:
    """Run `test` on SAMPLE open texts; where it holds for any, on up to EXTEND more."""
    rows = list(ex.remaining)[:SAMPLE]
    ok = test(rows)
    more = [i for i in ex.remaining if i not in rows][: max(EXTEND - len(rows), 0)]
    if ok.any() and more:
        rows, ok = rows + more, np.concatenate([ok, test(more)])
    return rows, ok


def _probe_repeat(ex: Explainer, ctx: PairContext, side: Side) -> None:
    """The same request twice: a side whose answers differ beyond tolerance and beyond float32
    rounding (CPU kernels reorder sums: ~1e-7 between two identical calls) is nondeterministic."""
    spread: dict[int, float] = {}

    def test(rows: list[int]) -> np.ndarray:
        texts = [ctx.texts[i] for i in rows]
        first, second = side.adapter.embed(texts), side.adapter.embed(texts)
        apart = np.nan_to_num(deltas(first, second)["max_abs"])
        spread.update(zip(rows, apart.tolist(), strict=True))
        return ~within(first, second, ctx.tolerance) & (apart > FLOAT32_FLOOR)

    rows, ok = _sampled(ex, test)
    ex.record(
        ("nondeterminism", side.label),
        f"{side.label}: the same request twice",
        rows,
        ok,
        lambda: Cause(
            "nondeterminism",
            STAGE_OF["nondeterminism"],
            f"{side.label} returns different vectors for the same request sent twice (max_abs "
            f"up to {max(spread.values()):.2g}).",
            0,
            f"make {side.label} deterministic (inference mode: model.eval(), no dropout; "
            "deterministic kernels), then compare again",
        ),
        reproduced=f"{side.label} given the same texts twice differed beyond tolerance",
    )


def _alone(
    side: Side, texts: Sequence[str], rows: list[int], cache: dict[int, np.ndarray]
) -> np.ndarray:
    """`side`'s vectors of `rows`, each text embedded on its own (cached per pair)."""
    for i in rows:
        if i not in cache:
            cache[i] = side.adapter.embed([texts[i]])[0]
    return np.stack([cache[i] for i in rows])


def _probe_alone(
    ex: Explainer, ctx: PairContext, side: Side, alone: dict[str, dict[int, np.ndarray]]
) -> None:
    """Each text alone: moves from the run's batched vector beyond tolerance and beyond the
    other side's noise (NOISE_FACTOR times what its texts move alone), and alone matches the
    other side: the side's vectors depend on what else is in the batch."""
    other = ctx.a if side is ctx.b else ctx.b
    moved: dict[int, float] = {}

    def test(rows: list[int]) -> np.ndarray:
        mine = _alone(side, ctx.texts, rows, alone[side.label])
        shift = deltas(mine, side.vectors[rows])["max_abs"]
        moved.update(zip(rows, shift.tolist(), strict=True))
        noise = 0.0
        if other.label in alone:  # the other side can be re-run (not recorded elsewhere)
            theirs = _alone(other, ctx.texts, rows[:SAMPLE], alone[other.label])
            noise = float(
                np.nan_to_num(deltas(theirs, other.vectors[rows[:SAMPLE]])["max_abs"]).max()
            )
        beyond = shift > max(NOISE_FACTOR * noise, FLOAT32_FLOOR)
        return (
            beyond
            & ~within(mine, side.vectors[rows], ctx.tolerance)
            & within(mine, other.vectors[rows], ctx.tolerance)
        )

    rows, ok = _sampled(ex, test)
    ex.record(
        ("batch-dependence", side.label),
        f"{side.label}: each text alone",
        rows,
        ok,
        lambda: Cause(
            "batch-dependence",
            STAGE_OF["batch-dependence"],
            f"{side.label} gives a text a different vector inside a batch than alone (max_abs "
            f"up to {max(moved.values()):.2g}); alone it matches {other.label}.",
            0,
            f"{side.label} lets padding or other texts leak into each vector (attention mask "
            "ignored in pooling, left padding with a causal mask): fix its masking, or send "
            "one text per request to it",
        ),
        reproduced=f"{side.label} given each text alone reproduced {other.label}",
    )


# --- tokenizer normalization ---------------------------------------------------------------


def strip_accents(text: str) -> str:
    """NFD, then every combining mark dropped (BERT's strip_accents)."""
    return "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c))


_SYMBOL = re.compile(r"[^\w\s]", re.UNICODE)


def swap_symbols(text: str) -> str:
    """Every non-ASCII symbol (emoji, dingbats) replaced by another one: a vocabulary that
    knows neither maps both to the same unknown token."""

    def swap(match: re.Match[str]) -> str:
        char = match.group(0)
        if ord(char) < 128 or not unicodedata.category(char).startswith("S"):
            return char
        return "\u2603" if char != "\u2603" else "\u2604"

    return _SYMBOL.sub(swap, text)


@dataclass(frozen=True)
class TokenizerTransform:
    """A change a tokenizer may undo: a side that maps x and T(x) to one vector undoes it."""

    name: str
    apply: Callable[[str], str]
    says: str


TOKENIZER_TRANSFORMS = (
    TokenizerTransform("lowercase", str.lower, "lowercases"),
    TokenizerTransform("strip_accents", strip_accents, "strips accents"),
    TokenizerTransform("unknown symbols", swap_symbols, "maps unknown symbols to one token"),
)


def _probe_tokenizer(ex: Explainer, ctx: PairContext, transform: TokenizerTransform) -> None:
    """Embed x and T(x) on both sides (one request each); a side that returns the same vector
    for both normalizes T in its tokenizer. Where exactly one side does, the other side given
    T(x) reproduces it on the texts it explains."""
    rows = [i for i in ex.remaining if transform.apply(ctx.texts[i]) != ctx.texts[i]][:SAMPLE]
    if not rows:
        return
    texts = [ctx.texts[i] for i in rows]
    moved = [transform.apply(t) for t in texts]
    same = {}
    for side in (ctx.a, ctx.b):
        both = side.adapter.embed(texts + moved)
        same[side.label] = within(both[: len(rows)], both[len(rows) :], ctx.tolerance)
    for doer, other in ((ctx.a, ctx.b), (ctx.b, ctx.a)):
        mask = same[doer.label] & ~same[other.label]
        if mask.any():
            shown = [i for i, take in zip(rows, mask, strict=True) if take]
            _record_tokenizer(ex, ctx, transform, (doer, other), shown)


def _record_tokenizer(
    ex: Explainer,
    ctx: PairContext,
    transform: TokenizerTransform,
    sides: tuple[Side, Side],
    shown: list[int],
) -> None:
    """`doer` undoes T and `other` not on the `shown` texts: measured where `other` given T(x)
    reproduces `doer` (those texts and up to EXTEND more); the shown texts it does not
    reproduce (an unknown symbol has no vector of its own on `other`) are inferred."""
    doer, other = sides
    tried = (
        shown
        + [
            i
            for i in ex.remaining
            if i not in shown and transform.apply(ctx.texts[i]) != ctx.texts[i]
        ][: max(EXTEND - len(shown), 0)]
    )
    again = other.adapter.embed([transform.apply(ctx.texts[i]) for i in tried])
    ex.record(
        ("tokenizer", f"{doer.label}: {transform.name}"),
        f"{doer.label}'s tokenizer: {transform.name}",
        tried,
        within(again, doer.vectors[tried], ctx.tolerance),
        functools.partial(_tokenizer_cause, transform, doer, other, ctx.texts[tried[0]]),
        reproduced=f"{doer.label} gave {transform.name}(text) and the text one vector, "
        f"{other.label} did not; {other.label} given {transform.name}(text) reproduced "
        f"{doer.label}",
    )
    left = [i for i in shown if i in ex.remaining]
    if not left:
        return
    basis = (
        f"{doer.label} gave {transform.name}(text) and the text one vector, {other.label} did "
        f"not (measured on {len(left)} texts); {other.label} given {transform.name}(text) did "
        f"not reproduce {doer.label}, so that this difference makes them fail is inferred"
    )
    ex.record(
        ("tokenizer", f"{doer.label}: {transform.name}: inferred"),
        f"{doer.label}'s tokenizer: {transform.name} (not reproduced)",
        left,
        np.ones(len(left), dtype=bool),
        lambda: dataclasses.replace(
            _tokenizer_cause(transform, doer, other, ctx.texts[left[0]]),
            evidence=INFERRED,
            basis=basis,
        ),
    )


def _tokenizer_cause(t: TokenizerTransform, doer: Side, other: Side, sample: str) -> Cause:
    return Cause(
        "tokenizer",
        STAGE_OF["tokenizer"],
        f"{doer.label}'s tokenizer {t.says}, {other.label}'s does not (e.g. {sample[:40]!r}).",
        0,
        f"use the model's own tokenizer files on both sides (one tokenizer {t.says}, the "
        f"other not: check the normalizer in tokenizer.json), or apply {t.name} to texts "
        f"before {other.label}",
    )
