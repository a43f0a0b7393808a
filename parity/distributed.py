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
        self._pools: dict[str, _Pool] = {}  # kept between embed() calls (keep_pools), by label

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
        for pool in self._pools.values():
            pool.stop()
        self._pools = {}
        if self._started:
            import ray

            ray.shutdown()
            self._started = False

    def keep_pools(self, specs: Sequence[AdapterSpec], models: Mapping[str, str | Path]) -> None:
        """Start one pool per spec that lives until close(), for many embed() calls (a streamed
        run's chunks): each model loads once per worker for the whole file. The cluster's CPUs
        are split between the pools (at least one actor each, on a fraction of a CPU where
        there are more pools than CPUs), so every pool fits at once and no more models are
        loaded than there are CPUs."""
        import ray

        self.start()
        cpus = self.workers or int(ray.cluster_resources().get("CPU", 1))
        count = max(1, cpus // len(specs))
        share = min(1.0, cpus / (count * len(specs)))
        for spec in specs:
            self._pools[spec.label] = self._start_pool(spec, models[spec.label], count, share)

    def _start_pool(self, spec: AdapterSpec, model: str | Path, most: int, share: float) -> _Pool:
        """`workers` actors (else one per CPU of the cluster; at most `most`), each loading the
        adapter once; their describe() is read first, so a load failure surfaces here."""
        import ray

        cpus = self.workers or int(ray.cluster_resources().get("CPU", 1))
        count = max(1, min(cpus, most))
        worker: Any = ray.remote(num_cpus=share)(_Worker)
        pool = _Pool([worker.remote(spec.as_string(), str(model)) for _ in range(count)], {})
        try:
            pool.described = _get(ray, pool.actors[0].describe.remote())
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
        import ray
        from ray.util import ActorPool

        self.start()
        unique = list(dict.fromkeys(texts))
        order = sorted(range(len(unique)), key=lambda i: len(unique[i]))
        chunks = [order[i : i + chunk] for i in range(0, len(order), chunk)]
        kept = self._pools.get(spec.label)
        pool = kept or self._start_pool(spec, model, len(chunks), 1.0)
        try:
            started = time.perf_counter()
            parts = ActorPool(pool.actors).map(
                lambda actor, rows: actor.embed.remote([unique[i] for i in rows]), chunks
            )
            vectors, tokens = _gather(ray, parts, chunks, len(unique), spec.label, progress)
            seconds = time.perf_counter() - started
            progress(
                f"{spec.label}: {len(unique)} texts in {seconds:.1f} s on {len(pool.actors)} Ray "
                f"workers ({len(unique) / max(seconds, 1e-9):.0f} texts/s)"
            )
        finally:
            if kept is None:
                pool.stop()
        row_of = {text: row for row, text in enumerate(unique)}
        rows = [row_of[text] for text in texts]
        return vectors[rows], pool.described, None if tokens is None else [tokens[r] for r in rows]


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
    parts: Any,
    chunks: list[list[int]],
    n: int,
    label: str,
    progress: Callable[[str], None],
) -> tuple[np.ndarray, list[list[str]] | None]:
    """The pool's results, in chunk order, placed at their texts' rows."""
    vectors: np.ndarray | None = None
    tokens: list[list[str]] | None = [[] for _ in range(n)]
    done = reported = 0
    for rows, result in zip(chunks, _results(ray, parts), strict=True):
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


def _results(ray: Any, parts: Any) -> Any:
    """The pool's results, each remote failure turned back into what it was on the worker."""
    iterator = iter(parts)
    while True:
        try:
            yield next(iterator)
        except StopIteration:
            return
        except ray.exceptions.RayError as exc:
            raise _original(exc) from exc


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
