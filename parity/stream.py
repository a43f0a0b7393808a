"""`parity run --stream`: a texts file read, embedded, compared and written chunk by chunk."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload
from warnings import catch_warnings, simplefilter

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from parity.adapters import Adapter, AdapterSpec
from parity.adapters.base import validate_texts
from parity.cache import EmbeddingCache
from parity.compare import (
    WORST_COUNT,
    Comparison,
    PairResult,
    SelfComparisonWarning,
    compare_all,
    compare_pair,
)
from parity.diagnose import diagnose_run
from parity.diagnose.noise import NOISE_SAMPLE, find_outlier
from parity.errors import ParityInputError
from parity.files import os_reason, replacing, text_sha256
from parity.metrics import DIMENSION, METRICS, Tolerance
from parity.modelinfo import resolve_model
from parity.report import build_summary, render_markdown, write_outputs
from parity.report.ci import publish
from parity.report.markdown import verdict_text
from parity.report.results import (
    CSV_FILE,
    RESULTS_FILE,
    _text_causes,
    pair_name,
    results_frame,
)
from parity.runner import (
    Engine,
    RunResult,
    adapter_key,
    call_size,
    embed_all,
    embed_cached,
    require_two,
)
from parity.texts import iter_text_chunks

CHUNK_ENV = "PARITY_STREAM_CHUNK"  # texts per chunk (default DEFAULT_CHUNK)
DEFAULT_CHUNK = 2048
BYTES_ENV = "PARITY_STREAM_BYTES"  # the --texts file size from which a run streams
AUTO_BYTES = 64 * 2**20  # ~5x10^5 texts of 120 characters: well under a GiB of vectors held
KEEP_FAILING = 256  # failing texts per pair whose vectors are kept for diagnosis
HTML_ROWS = 4000  # rows per pair report.html draws its figures from (its SCATTER_BUDGET)
SCHEMA = pa.schema(
    [
        ("text_id", pa.int64()),
        ("text", pa.string()),
        ("pair", pa.string()),
        ("a", pa.string()),
        ("b", pa.string()),
        *[(m, pa.float64()) for m in METRICS],
        ("passed", pa.bool_()),
        ("deciding_metric", pa.string()),
        ("cause", pa.string()),
        ("evidence", pa.string()),
        ("tokens_a", pa.int64()),
        ("tokens_b", pa.int64()),
    ]
)


def chunk_size() -> int:
    """Texts per chunk: $PARITY_STREAM_CHUNK, else DEFAULT_CHUNK."""
    raw = os.environ.get(CHUNK_ENV, "")
    if not raw:
        return DEFAULT_CHUNK
    if not raw.isdigit() or int(raw) <= 0:
        raise ParityInputError(f"{CHUNK_ENV}={raw!r}: give a positive number of texts per chunk")
    return int(raw)


def streams_by_default(path: str | Path) -> bool:
    """Whether `parity run --texts PATH` streams without --stream or --no-stream: a file of
    $PARITY_STREAM_BYTES (default AUTO_BYTES) or more. A missing file does not: the run's own
    reading says what is wrong with it."""
    raw = os.environ.get(BYTES_ENV, "")
    if raw and not raw.isdigit():
        raise ParityInputError(f"{BYTES_ENV}={raw!r}: give a file size in bytes")
    try:
        return Path(path).stat().st_size >= (int(raw) if raw else AUTO_BYTES)
    except OSError:
        return False


class SparseTexts(Sequence[str]):
    """n texts of which only some are held (the worst, the diagnosed); reading another is a bug."""

    def __init__(self, n: int, kept: Mapping[int, str]) -> None:
        self.n, self.kept = n, kept

    def __len__(self) -> int:
        return self.n

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[str]: ...
    def __getitem__(self, index: int | slice) -> str | Sequence[str]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self.n))]
        if index < 0:
            index += self.n
        return self.kept[index]


@dataclass
class PairTrack:
    """What a streamed run keeps of one pair: its per-text metrics (8 bytes a text a metric),
    verdicts, the indices of its worst texts and of the first KEEP_FAILING failing texts."""

    a: str
    b: str
    tolerance: Tolerance
    per_text: dict[str, list[np.ndarray]] = field(default_factory=dict)
    failing: list[np.ndarray] = field(default_factory=list)
    nonfinite: dict[str, list[int]] = field(default_factory=dict)
    dimensions: dict[str, int] = field(default_factory=dict)
    worst: list[tuple[float, int]] = field(default_factory=list)  # (-euclidean, index)
    failing_kept: list[int] = field(default_factory=list)

    def add(self, part: PairResult, offset: int) -> None:
        for m in METRICS:
            self.per_text.setdefault(m, []).append(np.asarray(part.per_text[m], np.float64))
        self.failing.append(np.asarray(part.failing, dtype=bool))
        for label, rows in part.nonfinite.items():
            self.nonfinite.setdefault(label, []).extend(offset + i for i in rows)
        self.dimensions = self.dimensions or dict(part.dimensions)
        # PairResult.worst's order: euclidean descending (NaN first), ties by index
        key = np.nan_to_num(part.per_text["euclidean"], nan=np.inf)
        local = np.argsort(-key, kind="stable")[:WORST_COUNT]
        merged = self.worst + [(float(-key[i]), offset + int(i)) for i in local]
        self.worst = sorted(merged)[:WORST_COUNT]
        room = KEEP_FAILING - len(self.failing_kept)
        self.failing_kept.extend(offset + int(i) for i in np.flatnonzero(part.failing)[:room])

    def result(self, texts: SparseTexts) -> PairResult:
        per_text = {m: np.concatenate(parts) for m, parts in self.per_text.items()}
        failing = np.concatenate(self.failing)
        return PairResult(
            self.a,
            self.b,
            self.tolerance,
            per_text,
            texts,
            failing,
            nonfinite=self.nonfinite,
            dimensions=self.dimensions,
        )


@dataclass
class Stream:
    """A streamed run in progress: loaded adapters, per-pair tracks, the texts and vectors kept."""

    adapters: dict[str, Adapter]
    specs: dict[str, AdapterSpec]
    tracks: list[PairTrack]
    work: Path
    keep_vectors: Path | None
    cache: EmbeddingCache | None = None
    used: dict[str, str] = field(default_factory=dict)  # cache keys read or filled, by side
    engine: Engine | None = None  # where chunks are embedded when not here (--engine ray)
    keys: dict[str, str] = field(default_factory=dict)  # each adapter's cache key, once
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)  # describe(), from the engine
    n: int = 0
    chunks: int = 0
    kept_texts: dict[int, str] = field(default_factory=dict)
    kept_vectors: dict[str, dict[int, np.ndarray]] = field(default_factory=dict)
    writers: list[pq.ParquetWriter] = field(default_factory=list)

    def needed(self) -> set[int]:
        """Indices whose text is kept: the noise sample, each pair's worst and kept failing."""
        keep = set(range(min(NOISE_SAMPLE, self.n)))
        for track in self.tracks:
            keep.update(i for _, i in track.worst)
            keep.update(track.failing_kept)
        return keep


def load_adapters(
    specs: Sequence[AdapterSpec], model_path: Path, progress: Callable[[str], None]
) -> dict[str, Adapter]:
    """Build and load every adapter once; on any failure close those already loaded."""
    adapters: dict[str, Adapter] = {}
    try:
        for spec in specs:
            adapter = spec.build(model_path)
            progress(f"{spec.label}: loading {Path(adapter.model).name or 'the served model'}")
            adapters[spec.label] = adapter
            adapter.load()
    except BaseException:
        for adapter in adapters.values():
            adapter.close()
        raise
    return adapters


def add_chunk(stream: Stream, texts: list[str], progress: Callable[[str], None]) -> None:
    """Embed one chunk with every adapter, compare every pair on it, append its rows."""
    texts = validate_texts(texts)
    offset = stream.n
    vectors, tokens = _embed_chunk(stream, texts, progress)
    for k, track in enumerate(stream.tracks):
        part = compare_pair(
            track.a, vectors[track.a], track.b, vectors[track.b], texts, track.tolerance
        )
        track.add(part, offset)
        frame = results_frame(Comparison([part], track.tolerance), tokens)
        frame["text_id"] += offset
        table = pa.Table.from_pandas(frame, SCHEMA, preserve_index=False)
        if len(stream.writers) == k:  # opened on the first chunk, with its pandas metadata
            path = stream.work / f"pair{k}.parquet"
            stream.writers.append(pq.ParquetWriter(path, table.schema))
        stream.writers[k].write_table(table)
    stream.n += len(texts)
    if stream.keep_vectors is not None:
        write_shards(stream.keep_vectors, stream.chunks, texts, vectors)
    stream.chunks += 1
    keep = stream.needed()
    for i in keep:
        if i >= offset:
            stream.kept_texts[i] = texts[i - offset]
    stream.kept_texts = {i: t for i, t in stream.kept_texts.items() if i in keep}
    for label, rows in vectors.items():
        held = stream.kept_vectors.setdefault(label, {})
        # a copy: a view would keep its whole chunk's matrix alive
        held.update((i, rows[i - offset].copy()) for i in keep if i >= offset)
        stream.kept_vectors[label] = {i: v for i, v in held.items() if i in keep}
    progress(f"{stream.n} texts embedded and compared")


def _embed_chunk(
    stream: Stream, texts: list[str], progress: Callable[[str], None]
) -> tuple[dict[str, np.ndarray], dict[str, list[list[str]] | None]]:
    """One chunk's vectors and token strings from every adapter: on the engine's workers, or
    here through the embedding cache where an adapter may be cached."""
    vectors: dict[str, np.ndarray] = {}
    tokens: dict[str, list[list[str]] | None] = {}
    if stream.engine is not None:  # every side's calls in flight at once
        labels = list(stream.adapters)
        sides = [
            (stream.specs[label], a.model, texts, call_size(a))
            for label, a in stream.adapters.items()
        ]
        for label, done in zip(labels, stream.engine.embed_sides(sides, progress), strict=True):
            vectors[label], config, tokens[label] = done
            stream.configs.setdefault(label, config)
        return vectors, tokens
    for label, adapter in stream.adapters.items():
        if stream.cache is not None and adapter.cacheable:
            if label not in stream.keys:
                stream.keys[label] = adapter_key(adapter)
            key = stream.keys[label]
            vectors[label] = embed_cached(adapter, texts, progress, stream.cache, stream.used, key)
        else:
            vectors[label] = embed_all(adapter, texts, progress, call_size(adapter))
        tokens[label] = adapter.tokenize(texts)
    return vectors, tokens


def write_shards(
    root: Path, chunk: int, texts: Sequence[str], vectors: Mapping[str, np.ndarray]
) -> None:
    """--keep-vectors: ROOT/<label>/<chunk:06d>.npy and .sha256 (one text's sha256 a line)."""
    hashes = "".join(text_sha256(t) + "\n" for t in texts)
    try:
        for label, rows in vectors.items():
            folder = root / label
            folder.mkdir(parents=True, exist_ok=True)
            np.save(folder / f"{chunk:06d}.npy", rows)
            (folder / f"{chunk:06d}.sha256").write_text(hashes, encoding="utf-8")
    except OSError as exc:
        raise ParityInputError(
            f"{exc.filename or root}: cannot write the vectors: {os_reason(exc)}; "
            "give --keep-vectors a writable directory"
        ) from exc


def stream_texts(
    stream: Stream, chunks: Iterator[list[str]], progress: Callable[[str], None]
) -> None:
    """Every chunk through add_chunk, the per-pair row files open meanwhile."""
    try:
        for texts in chunks:
            add_chunk(stream, texts, progress)
    finally:
        for writer in stream.writers:
            writer.close()


def diagnose_kept(
    stream: Stream,
    comparison: Comparison,
    model: str,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    """Diagnose each failing pair on the texts kept (the noise sample and the first KEEP_FAILING
    failing texts of each pair), then map each cause's texts back to their place in the file."""
    rows = sorted(i for i in stream.kept_vectors[next(iter(stream.adapters))])
    texts = [stream.kept_texts[i] for i in rows]
    embeddings = {
        label: np.stack([held[i] for i in rows]) for label, held in stream.kept_vectors.items()
    }
    with catch_warnings():  # said (or not) of the whole file, not of these texts
        simplefilter("ignore", SelfComparisonWarning)
        small_comparison = compare_all(embeddings, texts, comparison.tolerance)
    small = RunResult(
        model=model,
        texts=texts,
        embeddings=embeddings,
        configs={label: _config(stream, label) for label in stream.adapters},
        specs=stream.specs,
        comparison=small_comparison,
        adapters=stream.adapters,
        cache=stream.cache,
    )
    progress(f"diagnosing on {len(rows)} kept texts (at most {KEEP_FAILING} failing per pair)")
    diagnose_run(small, progress)
    for big, part in zip(comparison.pairs, small.comparison.pairs, strict=True):
        big.diagnosis = part.diagnosis
        big.causes = [
            {**cause, "indices": [rows[i] for i in cause.get("indices", [])]}
            for cause in part.causes
        ]
    return {"outlier": find_outlier(comparison.pairs, list(stream.adapters))}


def assemble_results(stream: Stream, comparison: Comparison, target: Path) -> None:
    """The per-pair row files, in pair order, with each failing text's cause, as `target`."""
    tmp = stream.work / RESULTS_FILE
    # the row files' schema carries from_pandas's metadata: token counts read back as Int64
    schema = pq.read_schema(stream.work / "pair0.parquet")
    with pq.ParquetWriter(tmp, schema) as writer:
        for k, pair in enumerate(comparison.pairs):
            causes, evidence = _text_causes(pair)
            source = pq.ParquetFile(stream.work / f"pair{k}.parquet")
            # one thread: measured 20 MiB less peak RSS reading 10^5 rows back than with threads
            for batch in source.iter_batches(batch_size=DEFAULT_CHUNK, use_threads=False):
                ids = batch.column("text_id").to_numpy()
                table = pa.Table.from_batches([batch])
                for name, values in (("cause", causes), ("evidence", evidence)):
                    column = pa.array([values[i] for i in ids], pa.string())
                    table = table.set_column(table.schema.get_field_index(name), name, column)
                writer.write_table(table)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(tmp), target)
    except OSError as exc:
        raise ParityInputError(
            f"{exc.filename or target}: cannot write the per-text results: {os_reason(exc)}; "
            "give --out a writable directory"
        ) from exc


def write_csv(source: Path, target: Path) -> None:
    """results.parquet as results.csv, a batch at a time (as results.write_results writes it)."""
    try:
        with replacing(target) as tmp, tmp.open("w", encoding="utf-8", newline="") as handle:
            batches = pq.ParquetFile(source).iter_batches(DEFAULT_CHUNK, use_threads=False)
            for number, batch in enumerate(batches):
                frame = pa.Table.from_batches([batch]).to_pandas()
                frame.to_csv(handle, index=False, header=number == 0)
    except OSError as exc:
        raise ParityInputError(
            f"{exc.filename or target}: cannot write the per-text results: {os_reason(exc)}; "
            "give --out a writable directory"
        ) from exc


def html_frame(
    source: Path, worst: Mapping[str, set[int]], limit: int | None = None
) -> tuple[pd.DataFrame, int]:
    """The rows of results.parquet report.html draws, read a batch at a time: per pair a fixed
    uniform random sample of at most `limit` (so its histograms keep the pair's proportions),
    its `worst` text ids always among them; and the most rows any pair had."""
    limit = HTML_ROWS if limit is None else limit
    rng = np.random.default_rng(0)
    kept: dict[str, pd.DataFrame] = {}
    rows_seen: dict[str, int] = {}
    for batch in pq.ParquetFile(source).iter_batches(DEFAULT_CHUNK, use_threads=False):
        frame = pa.Table.from_batches([batch]).to_pandas()
        for pair, rows in frame.groupby("pair", sort=False):
            name = str(pair)
            priority = rng.random(len(rows))
            priority[rows["text_id"].isin(worst.get(name, set())).to_numpy()] = -1.0
            rows_seen[name] = rows_seen.get(name, 0) + len(rows)
            merged = pd.concat([kept.get(name), rows.assign(_priority=priority)])
            kept[name] = merged.nsmallest(limit, "_priority")
    parts = [part.drop(columns="_priority").sort_values("text_id") for part in kept.values()]
    return pd.concat(parts, ignore_index=True), max(rows_seen.values(), default=0)


def write_stream_html(out: Path, summary: dict[str, Any]) -> None:
    """report.html of a streamed run, its figures from html_frame's sample (said on the page
    when it is one); the statistics and tables are summary.json's, exact."""
    from parity.report.html import write_html

    worst = {
        pair_name(p["a"], p["b"]): {int(w["index"]) for w in p.get("worst", [])}
        for p in summary["pairs"]
    }
    frame, most = html_frame(out / RESULTS_FILE, worst)
    sampled = None
    if most > HTML_ROWS:
        sampled = (
            f"Figures drawn from a fixed random sample of {HTML_ROWS:,} of the {most:,} texts "
            "of each pair (its worst texts among them): their counts and the line of largest "
            "deltas are the sample's. The statistics above are exact, from every text."
        )
    write_html(out / "report.html", summary, frame, title="parity run", sampled=sampled)


def stats_frame(comparison: Comparison) -> pd.DataFrame:
    """The columns summary.json's pair statistics read (results.pair_stats), from the tracks."""
    frames = []
    for pair in comparison.pairs:
        frames.append(
            pd.DataFrame(
                {
                    "pair": pair_name(pair.a, pair.b),
                    **{m: pair.per_text[m] for m in METRICS},
                    "passed": ~pair.failing,
                    "deciding_metric": DIMENSION if pair.dimensions else None,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def stream_run(
    specs: Sequence[AdapterSpec],
    path: str | Path,
    *,
    model: str | Path | None = None,
    tolerance: Tolerance | None = None,
    progress: Callable[[str], None] = lambda message: None,
    out: str | Path | None = None,
    keep_vectors: str | Path | None = None,
    diagnose: bool = True,
    warnings: Sequence[dict[str, str]] = (),
    cache: EmbeddingCache | None = None,
    csv: bool = False,
    engine: Engine | None = None,
) -> dict[str, Any]:
    """Stream a texts file through every adapter (see the module docstring) and return the
    summary.json dict, written with report.md and results.parquet when `out` is given; each
    chunk's vectors are read from and added to `cache` where an adapter may be cached."""
    require_two(specs)
    tolerance = tolerance or Tolerance()
    model_path = resolve_model(model)
    chunks = iter_text_chunks(path, chunk_size())
    first = next(chunks)  # a file with no texts, or an unreadable one: before any model loads
    progress("streaming: no retrieval set (its impact needs every vector held at once)")
    parent = Path(out) if out else None
    if parent is not None:
        _make_dir(parent)  # before any model loads
    if engine is None:
        adapters = load_adapters(specs, model_path, progress)
    else:  # built here, loaded only if diagnosis needs them; the workers load their own
        adapters = {spec.label: spec.build(model_path) for spec in specs}
        progress(f"starting a pool of {engine.name} workers per adapter")
    work = Path(tempfile.mkdtemp(prefix=".parity-stream-", dir=parent))
    try:
        if engine is not None:
            engine.keep_pools(specs, {label: a.model for label, a in adapters.items()})
        stream = Stream(
            adapters,
            {s.label: s for s in specs},
            [PairTrack(a, b, tolerance) for a, b in _pairs(list(adapters))],
            work,
            Path(keep_vectors) if keep_vectors else None,
            None if engine is not None else cache,
            engine=engine,
        )
        stream_texts(stream, _chained(first, chunks), progress)
        if engine is not None:
            engine.drop_pools()  # the workers' models go before diagnosis loads its own here
        summary = finish(stream, str(model_path), parent, diagnose, warnings, progress)
        if parent is not None and csv:
            write_csv(parent / RESULTS_FILE, parent / CSV_FILE)
        return summary
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if engine is not None:
            engine.drop_pools()
        for adapter in adapters.values():
            adapter.close()


def finish(
    stream: Stream,
    model: str,
    out: Path | None,
    diagnose: bool,
    warnings: Sequence[dict[str, str]],
    progress: Callable[[str], None],
) -> dict[str, Any]:
    """The pairs from the tracks, diagnosis on the kept texts, summary.json and the files."""
    texts = SparseTexts(stream.n, stream.kept_texts)
    comparison = Comparison([t.result(texts) for t in stream.tracks], stream.tracks[0].tolerance)
    for label in stream.adapters:
        bad = {i for pair in comparison.pairs for i in pair.nonfinite.get(label, [])}
        if bad:
            progress(
                f"{label}: {len(bad)} of {stream.n} vectors contain NaN or Inf "
                "(reported as failing texts, cause non-finite)"
            )
    extra: dict[str, Any] = {}
    if diagnose and not comparison.passed:  # as a run: nothing to explain, no diagnosis keys
        started = time.perf_counter()
        extra = diagnose_kept(stream, comparison, model, progress)
        extra["diagnosis_seconds"] = round(time.perf_counter() - started, 3)
    adapters = [
        {
            "label": label,
            "name": stream.specs[label].name,
            "spec": stream.specs[label].as_string(),
            "config": _config(stream, label),
        }
        for label in stream.adapters
    ]
    summary = build_summary(
        comparison,
        adapters,
        model=model,
        n_texts=stream.n,
        extra=extra,
        frame=stats_frame(comparison),
    )
    summary["passed"] = all(p["passed"] for p in summary["pairs"])
    summary["verdict"] = verdict_text(summary)
    summary["warnings"] = list(warnings)
    if out is not None:
        for stale in ("report.html", CSV_FILE):  # an earlier run's must not outlive this one
            (out / stale).unlink(missing_ok=True)
        assemble_results(stream, comparison, out / RESULTS_FILE)
        write_outputs(out, summary, render_markdown(summary, "parity run"))
        write_stream_html(out, summary)
    publish(summary, "parity run")  # GitHub's job summary and annotations; nothing elsewhere
    return summary


def _config(stream: Stream, label: str) -> dict[str, Any]:
    """An adapter's describe(): as the engine's workers returned it, else from the one here."""
    return stream.configs.get(label) or stream.adapters[label].describe()


def _make_dir(path: Path) -> None:
    if path.exists() and not path.is_dir():
        raise ParityInputError(
            f"{path}: cannot write the report there: it is a file, not a directory; "
            "give --out a directory (it is created if missing)"
        )
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ParityInputError(
            f"{path}: cannot write the report: {os_reason(exc)}; give --out a writable directory"
        ) from exc


def _pairs(labels: list[str]) -> list[tuple[str, str]]:
    return [(a, b) for i, a in enumerate(labels) for b in labels[i + 1 :]]


def _chained(first: list[str], rest: Iterator[list[str]]) -> Iterator[list[str]]:
    yield first
    yield from rest
