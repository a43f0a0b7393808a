"""Embed one text set through several adapters and compare every pair."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TextIO

import numpy as np

from parity.adapters import REGISTRY, Adapter, AdapterSpec
from parity.adapters.base import validate_texts
from parity.cache import EmbeddingCache, adapter_code, cache_key
from parity.compare import Comparison, Exercised, compare_all
from parity.errors import ParityInputError
from parity.files import text_sha256
from parity.metrics import Tolerance
from parity.modelinfo import resolve_model
from parity.retrieval import RetrievalSet, pair_impact

CHUNK = 512  # texts between two progress lines
BATCH = 32  # texts per embed() call: what every stack batches well on a CPU
# describe() keys whose differences show in an adapter's token strings (adapter.tokenize)
TOKEN_KEYS = frozenset({"preprocessing", "instruction", "tokenizer", "max_length"})


class Progress:
    """One line per step on stderr (or nowhere), with elapsed seconds."""

    def __init__(self, stream: TextIO | None = sys.stderr) -> None:
        self.stream = stream
        self.started = time.perf_counter()

    def __call__(self, message: str) -> None:
        if self.stream is not None:
            elapsed = time.perf_counter() - self.started
            print(f"[parity {elapsed:6.1f}s] {message}", file=self.stream, flush=True)


@dataclass
class RunResult:
    """Everything a run produced: texts, vectors, effective configs, timings and the comparison."""

    model: str
    texts: list[str]
    embeddings: dict[str, np.ndarray]
    configs: dict[str, dict[str, Any]]
    specs: dict[str, AdapterSpec]
    comparison: Comparison
    timings: dict[str, dict[str, float]] = field(default_factory=dict)
    adapters: dict[str, Adapter] = field(default_factory=dict)
    # each adapter's token strings per text (Embedded.tokens; None/absent where it cannot say)
    tokens: dict[str, list[list[str]] | None] = field(default_factory=dict)
    cache: EmbeddingCache | None = None  # the embedding cache the run used (diagnosis's too)

    @property
    def passed(self) -> bool:
        return self.comparison.passed

    def __bool__(self) -> bool:
        return self.passed


def embed_all(
    adapter: Adapter,
    texts: Sequence[str],
    progress: Callable[[str], None],
    chunk: int = BATCH,
) -> np.ndarray:
    """Embed each distinct text once, in calls of `chunk` texts of similar length (a stack that
    pads a batch to its longest text then pads little), and return the vectors in text order.

    Measured on 1,000 corpus texts with BCEmbedding, which pads each batch of 256 to its longest
    text: 62.4 s in one call, 12.7 s length-sorted in calls of 32, max-abs change 2.2e-7."""
    unique, calls = batch_plan(texts, chunk)
    vectors: np.ndarray | None = None
    done = reported = 0
    for rows in calls:
        part = adapter.embed([unique[i] for i in rows])
        if vectors is None:
            vectors = np.empty((len(unique), part.shape[1]), dtype=np.float32)
        vectors[rows] = part
        done += len(rows)
        if len(unique) > CHUNK and (done - reported >= CHUNK or done == len(unique)):
            progress(f"{adapter.label}: {done}/{len(unique)} texts")
            reported = done
    if vectors is None:
        raise ParityInputError("no texts to embed")
    if len(unique) == len(texts):
        return vectors
    return vectors[text_rows(unique, texts)]


def batch_plan(texts: Sequence[str], chunk: int) -> tuple[list[str], list[list[int]]]:
    """Each distinct text once, cut into calls of `chunk` texts of similar length: the
    distinct texts, and each call's rows among them."""
    unique = list(dict.fromkeys(texts))
    order = sorted(range(len(unique)), key=lambda i: len(unique[i]))
    return unique, [order[i : i + chunk] for i in range(0, len(order), chunk)]


def text_rows(unique: Sequence[str], texts: Sequence[str]) -> list[int]:
    """Where each of `texts` is among `unique` (batch_plan's distinct texts)."""
    row_of = {text: row for row, text in enumerate(unique)}
    return [row_of[text] for text in texts]


def call_size(adapter: Adapter) -> int:
    """Texts per embed() call: the adapter's own batch_size (times its concurrency, for a
    server), so the batches it reports are the batches it runs; BATCH where it has none."""
    size = adapter.config.get("batch_size")
    if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
        return BATCH
    concurrency = adapter.config.get("concurrency", 1)
    return size * (concurrency if isinstance(concurrency, int) and concurrency > 0 else 1)


def embed_cached(
    adapter: Adapter,
    texts: Sequence[str],
    progress: Callable[[str], None],
    cache: EmbeddingCache,
    used: dict[str, str],
    key: str | None = None,
) -> np.ndarray:
    """embed_all through the embedding cache (parity.cache.EmbeddingCache): each distinct text
    the cache lacks is embedded once, in text order, and stored; the rest are read back.
    `used`: each cache key this run has read or filled, with the label of the side that did
    (a streamed run calls this once a chunk, with the adapter's `key` from adapter_key)."""
    key = key or adapter_key(adapter)
    if used.setdefault(key, adapter.label) != adapter.label:
        # a second side with this very configuration in one run: embed it for real, or a
        # "same stack twice" check would compare the first side's vectors with themselves
        return embed_all(adapter, texts, progress, call_size(adapter))
    hashes = [text_sha256(text) for text in texts]
    found = cache.lookup(key, hashes)
    todo = dict.fromkeys(h for h in hashes if h not in found)
    if found:
        progress(
            f"{adapter.label}: {len(hashes) - sum(h in todo for h in hashes)} of {len(texts)} texts from the cache"
        )
    if todo:
        first = {h: text for h, text in zip(hashes, texts, strict=True)}
        missing = [first[h] for h in todo]
        vectors = embed_all(adapter, missing, progress, call_size(adapter))
        cache.store(key, list(todo), vectors)
        found.update(zip(todo, vectors, strict=True))
    return np.stack([found[h] for h in hashes]).astype(np.float32, copy=False)


def adapter_key(adapter: Adapter) -> str:
    """The embedding cache's key of a loaded adapter's vectors (parity.cache.cache_key)."""
    return cache_key(adapter.describe(), adapter.model, adapter_code(type(adapter)))


def require_two(specs: Sequence[AdapterSpec]) -> None:
    if len(specs) < 2:
        raise ParityInputError("need at least two adapters to compare (give --adapter twice)")


@dataclass
class Embedded:
    """Vectors, effective configs and timings of several adapters over one text list (and the
    retrieval set's vectors, empty when none was embedded), and each adapter's token strings
    per text (None where the adapter cannot say)."""

    embeddings: dict[str, np.ndarray]
    configs: dict[str, dict[str, Any]]
    timings: dict[str, dict[str, float]]
    adapters: dict[str, Adapter]
    retrieval: dict[str, np.ndarray]
    tokens: dict[str, list[list[str]] | None] = field(default_factory=dict)


def token_exercise(tokens: Mapping[str, list[list[str]] | None]) -> Exercised:
    """The self-comparison check for compare_all: two adapters that returned bit-identical
    vectors exercise their configuration difference when a setting outside TOKEN_KEYS differs
    (pooling, normalize, dtype ...), or when their tokens differ on some text. Identical tokens
    on every text (a WordPiece tokenizer drops the "\n" LangChain replaces) -> None: no warning."""

    def exercised(a: str, b: str, differing: list[str]) -> str | None:
        beyond_tokens = [k for k in differing if k not in TOKEN_KEYS]
        if beyond_tokens:
            return f"{', '.join(beyond_tokens)} should change the vectors"
        a_tokens, b_tokens = tokens.get(a), tokens.get(b)
        if a_tokens is None or b_tokens is None:
            return ""  # cannot tell: warn, as before
        differ = sum(x != y for x, y in zip(a_tokens, b_tokens, strict=True))
        return f"their tokens differ on {differ} of {len(a_tokens)} texts" if differ else None

    return exercised


class Engine(Protocol):
    """Where a side's texts are embedded when not in this process (parity.distributed.RayEngine):
    vectors, describe() and token strings of `texts`, in text order."""

    name: str

    def embed(
        self,
        spec: AdapterSpec,
        model: str | Path,
        texts: Sequence[str],
        chunk: int,
        progress: Callable[[str], None],
    ) -> tuple[np.ndarray, dict[str, Any], list[list[str]] | None]: ...

    def embed_sides(
        self,
        sides: Sequence[tuple[AdapterSpec, str | Path, Sequence[str], int]],
        progress: Callable[[str], None],
    ) -> list[tuple[np.ndarray, dict[str, Any], list[list[str]] | None]]:
        """embed() of several (spec, model, texts, chunk) sides, run together."""
        ...

    def keep_pools(self, specs: Sequence[AdapterSpec], models: Mapping[str, str | Path]) -> None:
        """Keep each spec's workers loaded across embed() calls until drop_pools() or close."""

    def drop_pools(self) -> None:
        """Stop the workers keep_pools started."""


def embed_specs(
    specs: Sequence[AdapterSpec],
    texts: Sequence[str],
    model_path: Path,
    progress: Callable[[str], None],
    *,
    keep_adapters: bool = False,
    retrieval: RetrievalSet | None = None,
    cache: EmbeddingCache | None = None,
    engine: Engine | None = None,
) -> Embedded:
    """Load each adapter in turn, embed all texts (then the retrieval set's, in the same
    calls) with it, and free it (unless kept). With an `engine`, the texts are embedded there
    and the adapter kept here stays unloaded until diagnosis needs it."""
    embedded = Embedded({}, {}, {}, {}, {})
    used: dict[str, str] = {}  # cache keys this run has read or filled, and by which side
    every_text = [*texts, *(retrieval.all_texts() if retrieval is not None else [])]
    for spec in specs:
        adapter = spec.build(model_path)
        try:
            if engine is not None:
                progress(f"{spec.label}: embedding {len(every_text)} texts on {engine.name}")
                vectors, config, tokens = engine.embed(
                    spec, adapter.model, every_text, call_size(adapter), progress
                )
                tokens = None if tokens is None else tokens[: len(texts)]
            else:
                vectors, config, tokens = _embed_here(
                    adapter, every_text, len(texts), progress, cache, used
                )
            embedded.embeddings[spec.label] = vectors[: len(texts)]
            if retrieval is not None:
                embedded.retrieval[spec.label] = vectors[len(texts) :]
            embedded.configs[spec.label] = config
            embedded.tokens[spec.label] = tokens
            report_nonfinite(spec.label, vectors[: len(texts)], progress)
        except BaseException:
            adapter.close()  # a failed adapter is never kept: free it (an HTTP client's sockets)
            raise
        finally:
            if not keep_adapters:
                adapter.close()
        if keep_adapters:
            embedded.adapters[spec.label] = adapter
        embedded.timings[spec.label] = {
            "load_s": adapter.load_seconds,
            "embed_s": adapter.embed_seconds,
        }
    return embedded


def _embed_here(
    adapter: Adapter,
    texts: Sequence[str],
    n_texts: int,
    progress: Callable[[str], None],
    cache: EmbeddingCache | None,
    used: dict[str, str],
) -> tuple[np.ndarray, dict[str, Any], list[list[str]] | None]:
    """Load the adapter in this process and embed `texts` (through the cache where it may)."""
    progress(f"{adapter.label}: loading {Path(adapter.model).name or 'the served model'}")
    adapter.load()
    progress(f"{adapter.label}: embedding {len(texts)} texts")
    if cache is not None and adapter.cacheable:
        vectors = embed_cached(adapter, texts, progress, cache, used)
    else:
        vectors = embed_all(adapter, texts, progress, call_size(adapter))
    return vectors, adapter.describe(), adapter.tokenize(texts[:n_texts])


def report_nonfinite(label: str, vectors: np.ndarray, progress: Callable[[str], None]) -> None:
    """Say so when an adapter returned NaN/Inf vectors: they are findings (failing texts)."""
    bad = int((~np.isfinite(vectors).all(axis=1)).sum())
    if bad:
        progress(
            f"{label}: {bad} of {len(vectors)} vectors contain NaN or Inf "
            "(reported as failing texts, cause non-finite)"
        )


def run(
    specs: Sequence[AdapterSpec],
    texts: Sequence[str],
    *,
    model: str | Path | None = None,
    tolerance: Tolerance | None = None,
    progress: Callable[[str], None] | None = None,
    keep_adapters: bool = False,
    retrieval: RetrievalSet | None = None,
    cache: EmbeddingCache | None = None,
    engine: Engine | None = None,
) -> RunResult:
    """Embed the texts (and the retrieval set, if given) with each adapter, compare every pair,
    and attach each pair's retrieval impact."""
    require_two(specs)
    texts = validate_texts(texts)  # before any model loads
    if not texts:
        raise ParityInputError("no texts")
    progress = progress or Progress(None)
    model_path = resolve_model(model)
    tolerance = tolerance or Tolerance()
    fixed = [s.label for s in specs if REGISTRY[s.name].fixed_texts]
    if retrieval is not None and fixed:
        # an exported vectors file holds only its own texts, never the retrieval set's
        progress(f"retrieval set skipped: {fixed[0]} holds only the texts it was exported with")
        retrieval = None
    embedded = embed_specs(
        specs,
        texts,
        model_path,
        progress,
        keep_adapters=keep_adapters,
        retrieval=retrieval,
        cache=cache,
        engine=engine,
    )
    embeddings = embedded.embeddings
    progress(f"comparing {len(specs) * (len(specs) - 1) // 2} pairs")
    comparison = compare_all(
        embeddings, texts, tolerance, embedded.configs, token_exercise(embedded.tokens)
    )
    if retrieval is not None:
        for pair in comparison.pairs:
            pair.retrieval = pair_impact(
                retrieval, embedded.retrieval[pair.a], embedded.retrieval[pair.b]
            )
    return RunResult(
        model=str(model_path),
        texts=list(texts),
        embeddings=embeddings,
        configs=embedded.configs,
        specs={s.label: s for s in specs},
        comparison=comparison,
        timings=embedded.timings,
        adapters=embedded.adapters,
        tokens=embedded.tokens,
        cache=cache if engine is None else None,
    )
