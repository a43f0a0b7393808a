"""`parity run --engine ray`: each adapter's texts in chunks over a Ray cluster, one actor pool per
adapter (every actor loads its model once), vectors and tokens back in text order."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from parity.adapters import AdapterSpec
from parity.errors import AdapterCrash, AdapterUnavailable, ParityError, ParityInputError
from parity.runner import batch_plan, text_rows

# what every worker must see, whatever its machine's environment: never the hub
WORKER_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
PROGRESS_EVERY = 512  # texts between two progress lines (the runner's CHUNK)


class _Worker:
    """One actor: builds and loads one adapter, then embeds whatever chunks it is given."""

    def __init__(self, spec: str, model: str) -> None:
        # a failed load is kept and raised by the first call: an error in an actor's creation
        # reaches the driver as ActorDiedError, which no longer carries the exception itself
        self.failed: BaseException | None = None
        try:
            self.adapter = AdapterSpec.parse(spec).build(model)
            self.adapter.load()
        except Exception as exc:
            self.failed = exc

    def embed(self, texts: list[str]) -> tuple[np.ndarray, list[list[str]] | None]:
        if self.failed is not None:
            raise self.failed
        return self.adapter.embed(texts), self.adapter.tokenize(texts)

    def describe(self) -> dict[str, Any]:
        if self.failed is not None:
            raise self.failed
        return self.adapter.describe()


class RayEngine:
    """Embeds each side on a Ray cluster (`address`: an existing one, e.g. "auto" or
    "ray://host:10001"; None: $RAY_ADDRESS, else a local one started here and stopped on close)."""

    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None) -> None:
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self.workers = workers
        self._started = False
        # kept between embed() calls (keep_pools), by spec and model
        self._pools: dict[tuple[str, str], _Pool] = {}

    def __enter__(self) -> RayEngine:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def start(self) -> None:
        try:
            import ray
        except ImportError:
            raise AdapterUnavailable(
                "--engine ray needs Ray, which is not installed; install with `pip install ray`"
            ) from None
        if ray.is_initialized():
            return
        options: dict[str, Any] = {
            "include_dashboard": False,
            "log_to_driver": False,
            "configure_logging": False,
            "runtime_env": {"env_vars": WORKER_ENV},
        }
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage report leaves the machine
        if self.address:
            ray.init(address=self.address, **options)
        else:  # a local cluster of this machine's cores, reachable on loopback only
            ray.init(num_cpus=os.cpu_count() or 1, _node_ip_address="127.0.0.1", **options)
        self._started = True

    def close(self) -> None:
        self.drop_pools()
        if self._started:
            import ray

            ray.shutdown()
            self._started = False

    def keep_pools(self, specs: Sequence[AdapterSpec], models: Mapping[str, str | Path]) -> None:
        """Start one pool per spec that lives until drop_pools() or close(), for many embed()
        calls (a streamed run's chunks): each model loads once per worker for the whole file.
        The cluster's CPUs are split between the pools (at least one actor each, on a fraction
        of a CPU where there are more pools than CPUs), so every pool fits at once and no more
        models are loaded than there are CPUs."""
        import ray

        self.drop_pools()
        self.start()
        cpus = self.workers or int(ray.cluster_resources().get("CPU", 1))
        count = max(1, cpus // len(specs))
        share = int(min(1.0, cpus / (count * len(specs))) * 1e4) / 1e4  # Ray truncates to 1e-4
        for spec in specs:
            model = models[spec.label]
            self._pools[_pool_key(spec, model)] = self._start_pool(spec, model, count, share)

    def drop_pools(self) -> None:
        """Stop the pools keep_pools started (their models leave the workers)."""
        for pool in self._pools.values():
            pool.stop()
        self._pools = {}

    def _start_pool(
        self, spec: AdapterSpec, model: str | Path, most: int, share: float | None
    ) -> _Pool:
        """`workers` actors (else one per CPU of the cluster; at most `most`), each loading the
        adapter once, each on `share` of a CPU (None: one CPU, or what is free of them when kept
        pools hold the rest). Every actor's describe() is awaited, so a load failure surfaces
        here, and actors the cluster cannot place within START_TIMEOUT are an error, not a hang."""
        import ray

        cpus = self.workers or int(ray.cluster_resources().get("CPU", 1))
        count = max(1, min(cpus, most))
        if share is None:
            free = ray.available_resources().get("CPU", 0.0)
            share = int(min(1.0, free / count) * 1e4) / 1e4  # 0: placed without reserving
        worker: Any = ray.remote(num_cpus=share)(_Worker)
        pool = _Pool([worker.remote(spec.as_string(), str(model)) for _ in range(count)], {})
        try:
            refs = [actor.describe.remote() for actor in pool.actors]
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=START_TIMEOUT)
            if len(ready) < len(refs):
                free = ray.available_resources().get("CPU", 0)
                raise ParityInputError(
                    f"{spec.label}: {len(refs) - len(ready)} of {len(refs)} Ray workers were not "
                    f"placed or had not loaded the model within {START_TIMEOUT:.0f} s "
                    f"({free:g} CPUs free on the cluster); free some CPUs or run fewer adapters "
                    "at once, or check that every worker can read the model directory"
                )
            described = [_get(ray, ref) for ref in refs]  # every actor's load failure surfaces
            pool.described = described[0]
        except BaseException:
            pool.stop()
            raise
        return pool

    def embed(
        self,
        spec: AdapterSpec,
        model: str | Path,
        texts: Sequence[str],
        chunk: int,
        progress: Callable[[str], None],
    ) -> tuple[np.ndarray, dict[str, Any], list[list[str]] | None]:
        """Vectors, describe() and token strings of `texts` (each distinct text embedded once,
        length-sorted chunks of `chunk`, spread over the pool), in text order."""
        return self.embed_sides([(spec, model, texts, chunk)], progress)[0]

    def embed_sides(
        self, sides: Sequence[Side], progress: Callable[[str], None]
    ) -> list[tuple[np.ndarray, dict[str, Any], list[list[str]] | None]]:
        """embed() for several sides at once: every side's chunks are handed to its pool
        (round robin, length-sorted) before any result is awaited, so kept pools work together."""
        import ray

        self.start()
        started = time.perf_counter()
        jobs = []
        try:
            for spec, model, texts, chunk in sides:
                kept = self._pools.get(_pool_key(spec, model))
                job = _Job.plan(texts, chunk)
                pool = kept or self._start_pool(spec, model, len(job.chunks), None)
                jobs.append((spec, job, pool, kept is None))
                job.submit(pool.actors)
            results = []
            for spec, job, pool, _ in jobs:
                vectors, tokens = _gather(
                    ray, job.refs, job.chunks, len(job.unique), spec.label, progress
                )
                seconds = time.perf_counter() - started
                progress(
                    f"{spec.label}: {len(job.unique)} texts in {seconds:.1f} s on "
                    f"{len(pool.actors)} Ray workers ({len(job.unique) / max(seconds, 1e-9):.0f} "
                    "texts/s)"
                )
                results.append(job.in_text_order(vectors, tokens, pool.described))
            return results
        finally:
            for _, _, pool, temporary in jobs:
                if temporary:
                    pool.stop()


Side = tuple[AdapterSpec, "str | Path", Sequence[str], int]  # spec, model, texts, texts a call
START_TIMEOUT = 900.0  # seconds for every actor of a pool to be placed and load its model


def _pool_key(spec: AdapterSpec, model: str | Path) -> tuple[str, str]:
    return spec.as_string(), str(model)


@dataclass
class _Job:
    """One side's texts: distinct, cut into length-sorted chunks, and the refs of their calls."""

    texts: Sequence[str]
    unique: list[str]
    chunks: list[list[int]]
    refs: list[Any]

    @classmethod
    def plan(cls, texts: Sequence[str], chunk: int) -> _Job:
        return cls(texts, *batch_plan(texts, chunk), [])

    def submit(self, actors: list[Any]) -> None:
        for number, rows in enumerate(self.chunks):
            actor = actors[number % len(actors)]
            self.refs.append(actor.embed.remote([self.unique[i] for i in rows]))

    def in_text_order(
        self, vectors: np.ndarray, tokens: list[list[str]] | None, described: dict[str, Any]
    ) -> tuple[np.ndarray, dict[str, Any], list[list[str]] | None]:
        rows = text_rows(self.unique, self.texts)
        return vectors[rows], described, None if tokens is None else [tokens[r] for r in rows]


@dataclass
class _Pool:
    """One adapter's actors and the describe() the first of them returned."""

    actors: list[Any]
    described: dict[str, Any]

    def stop(self) -> None:
        import ray

        for actor in self.actors:
            ray.kill(actor)
        self.actors = []


def _gather(
    ray: Any,
    refs: list[Any],
    chunks: list[list[int]],
    n: int,
    label: str,
    progress: Callable[[str], None],
) -> tuple[np.ndarray, list[list[str]] | None]:
    """The calls' results, in chunk order, placed at their texts' rows."""
    vectors: np.ndarray | None = None
    tokens: list[list[str]] | None = [[] for _ in range(n)]
    done = reported = 0
    for rows, result in zip(chunks, _results(ray, refs), strict=True):
        part, part_tokens = result
        if vectors is None:
            vectors = np.empty((n, part.shape[1]), dtype=np.float32)
        vectors[rows] = part
        if part_tokens is None or tokens is None:
            tokens = None
        else:
            for row, token_list in zip(rows, part_tokens, strict=True):
                tokens[row] = token_list
        done += len(rows)
        if n > PROGRESS_EVERY and (done - reported >= PROGRESS_EVERY or done == n):
            progress(f"{label}: {done}/{n} texts")
            reported = done
    if vectors is None:
        raise ParityInputError("no texts to embed")
    return vectors, tokens


def _results(ray: Any, refs: list[Any]) -> Any:
    """The calls' results in order, each remote failure turned back into what it was."""
    for ref in refs:
        yield _get(ray, ref)


def _get(ray: Any, ref: Any) -> Any:
    try:
        return ray.get(ref)
    except ray.exceptions.RayError as exc:
        raise _original(exc) from exc


def _original(exc: Exception) -> Exception:
    """A worker's ParityError (bad model dir, bad output: exit 2) or crash (exit 3), unwrapped."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, (ParityError, AdapterCrash)):
        return cause
    return AdapterCrash(f"a Ray worker failed: {type(exc).__name__}: {exc}")
