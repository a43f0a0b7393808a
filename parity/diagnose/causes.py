"""What diagnosis hands back (Cause, Diagnosis), what it works on (Side, PairContext), and the
Explainer that counts each failing text under exactly one cause."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from parity.adapters import Adapter, AdapterSpec
from parity.cache import EmbeddingCache
from parity.diagnose.settings import SideSettings
from parity.diagnose.tokens import token_diff
from parity.metrics import Tolerance, deltas

MEASURED = "measured"
INFERRED = "inferred"
STAGE_ORDER = ("input_ids", "attention_mask", "token_embeddings", "pooled", "normalized")
UNIT_NORM_TOL = 1e-2  # |norm - 1| within this counts as a unit vector (fp16 rounding included)


def cause_label(cause: Mapping[str, Any]) -> str:
    """A cause (as summary.json holds it) in one phrase: `pooling+truncation`, or
    `inferred: model-files` for a cause put down by elimination."""
    name = "+".join([cause["cause"], *cause.get("also", [])])
    return f"inferred: {name}" if cause.get("evidence") == INFERRED else name


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
            "indices": list(self.indices),  # summary.json keeps the first 50
            "tokens": self.tokens,
        }


@dataclass
class Diagnosis:
    """Everything diagnosis found for one pair.

    `first_stage_evidence` says how `first_stage` was found: "measured" when the stage walk
    located it on a failing text, "inferred" when it is the stage of the top cause (the walk found
    nothing, crashed, or could not run); None with no stage."""

    causes: list[Cause]
    config_diff: list[dict[str, Any]]
    probes: list[dict[str, Any]]
    noise_floor: dict[str, dict[str, float]]
    first_stage: str | None
    first_stage_evidence: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "config_diff": self.config_diff,
            "probes": self.probes,
            "noise_floor": self.noise_floor,
            "first_stage": self.first_stage,
            "first_stage_evidence": self.first_stage_evidence,
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


@dataclass
class ProbeVectors:
    """Vectors probes compute, shared by every pair of one diagnosis (three pairs rebuild
    bcembedding with max_length=256 on the same texts) and kept in the run's embedding cache,
    when it has one, for the next run. Only for probes that ask what a configuration gives:
    those that re-embed on purpose (noise floor, nondeterminism, batch dependence) embed."""

    cache: EmbeddingCache | None = None
    # the run's sides' cache keys: a side rebuilt into one of them embeds for real, or it would
    # read that side's own vectors back and "reproduce" it by construction
    sides: frozenset[str] = frozenset()
    held: dict[tuple[Any, tuple[str, ...]], np.ndarray] = field(default_factory=dict)

    def embed(self, adapter: Adapter, texts: list[str]) -> np.ndarray:
        """`adapter`'s vectors of `texts`, each distinct (configuration, texts) embedded once."""
        from parity.runner import adapter_key, embed_cached

        if not adapter.cacheable:  # a server, a vectors file: this adapter object, these texts
            memo: tuple[Any, tuple[str, ...]] = (id(adapter), tuple(texts))
            if memo not in self.held:
                self.held[memo] = adapter.embed(texts)
            return self.held[memo]
        key = adapter_key(adapter)
        memo = (key, tuple(texts))
        if memo not in self.held:
            circular = adapter.reuse_loaded and key in self.sides
            if self.cache is not None and not circular:
                quiet: Callable[[str], None] = lambda message: None  # noqa: E731
                self.held[memo] = embed_cached(adapter, texts, quiet, self.cache, {}, key)
            else:
                self.held[memo] = adapter.embed(texts)
        return self.held[memo]


@dataclass
class PairContext:
    """What every probe needs: both sides, the texts, where to rebuild, how close is close."""

    a: Side
    b: Side
    texts: Sequence[str]
    model: str
    tolerance: Tolerance
    progress: Callable[[str], None]
    frozen_a: bool
    reference: dict[str, Any]
    probes: ProbeVectors = field(default_factory=ProbeVectors)


class Explainer:
    """Assigns failing texts to the first candidate that explains them."""

    def __init__(self, failing: list[int]) -> None:
        self.remaining = list(failing)
        self.causes: dict[tuple[str, str], Cause] = {}
        self.probes: list[dict[str, Any]] = []

    def skip(self, probe: str, why: str, *, crashed: bool = False) -> None:
        """List `probe` as not run, and why; `crashed`: it raised (a remembered run must not
        keep a diagnosis a passing failure weakened)."""
        entry: dict[str, Any] = {"probe": probe, "skipped": why}
        if crashed:
            entry["crashed"] = True
        self.probes.append(entry)

    @contextlib.contextmanager
    def guard(self, probe: str) -> Iterator[None]:
        """Run one probe; if it crashes (a rebuilt adapter that cannot load or embed, a bug),
        list it as skipped with the exception and go on: the run's finding must survive."""
        try:
            yield
        except Exception as exc:  # any failure of a probe costs only that probe
            self.skip(probe, f"{type(exc).__name__}: {exc}", crashed=True)

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
        if explained and key not in self.causes:
            self.causes[key] = make()  # first, so a crash here leaves nothing half-recorded
        self.probes.append({"probe": probe, "tried": len(tried), "explained": len(explained)})
        if not explained:
            return
        cause = self.causes[key]
        cause.indices += explained
        cause.explained += len(explained)
        if reproduced:
            line = f"{reproduced} on {len(explained)}/{len(tried)} texts"
            cause.basis = f"{cause.basis}; {line}" if cause.basis else line
        done = set(explained)
        self.remaining = [i for i in self.remaining if i not in done]


def within(x: np.ndarray, y: np.ndarray, tolerance: Tolerance) -> np.ndarray:
    """Per row: are x and y within tolerance?"""
    return tolerance.within(deltas(x, y))


def unit(vectors: np.ndarray) -> np.ndarray:
    """The rows scaled to unit length."""
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def is_unit(vectors: np.ndarray) -> np.ndarray:
    """Per row: is it a unit vector (within fp16 rounding)?"""
    return np.abs(np.linalg.norm(vectors.astype(np.float64), axis=1) - 1.0) <= UNIT_NORM_TOL


def token_note(a: Side, b: Side, text: str) -> list[str]:
    """How the two sides tokenize one text differently, in short lines."""
    a_tokens = a.adapter.tokenize([text])
    b_tokens = b.adapter.tokenize([text])
    if a_tokens is None or b_tokens is None:
        return []
    notes = token_diff(a_tokens[0], b_tokens[0])
    if len(a_tokens[0]) != len(b_tokens[0]):
        notes.append(f"{a.label} keeps {len(a_tokens[0])} tokens, {b.label} {len(b_tokens[0])}")
    return [n if len(n) <= 160 else n[:157] + "..." for n in notes]


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
