"""Freeze today's vectors: embed a text set (and the retrieval set) and write a baseline."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from parity.adapters import AdapterSpec, parse_specs
from parity.adapters.base import validate_texts
from parity.baseline.manifest import (
    KIND,
    SCHEMA_VERSION,
    TEXTS,
    environment,
    model_record,
    now_utc,
    text_hashes,
    text_set_hash,
    texts_sha256,
)
from parity.baseline.store import ensure_writable, vector_file_name, write_baseline
from parity.baseline.swap import baseline_lock
from parity.compare import Exercised, compare_all
from parity.errors import BaselineError, ParityInputError
from parity.metrics import Tolerance
from parity.retrieval import RetrievalSet


def portable_describe(config: dict[str, Any], model_path: Path) -> dict[str, Any]:
    """describe() with the model named as the manifest names it (no machine path for the
    bundled model), so a committed baseline is the same on every machine."""
    from parity.modelinfo import model_reference

    if "model" not in config:
        return config
    same = str(config["model"]) in (str(model_path), str(Path(model_path).resolve()))
    return {**config, "model": model_reference(model_path)} if same else config


def adapter_model(spec: AdapterSpec, config: dict[str, Any], model_path: Path) -> dict[str, Any]:
    """Which model one adapter loaded: the run's (recorded once, in manifest["model"]), its own
    model= directory (path and file hashes, so the gate sees it change), or a served model name."""
    from parity.adapters import REGISTRY
    from parity.modelinfo import model_reference

    if not REGISTRY[spec.name].model_is_path:  # a server's model (or none: a vectors file)
        return {"served": config.get("served_model") or spec.model, "path": None}
    if spec.model is None:
        return {"path": model_reference(model_path), "run_model": True}
    own = Path(str(config.get("model") or spec.model))
    if own.resolve() == Path(model_path).resolve():
        return {"path": model_reference(model_path), "run_model": True}
    return model_record(own) if own.is_dir() else {"path": str(own), "files": {}}


def _retrieval_record(retrieval: RetrievalSet | None) -> dict[str, Any] | None:
    if retrieval is None:
        return None
    all_texts = retrieval.all_texts()
    return {
        "name": retrieval.name,
        "version": retrieval.version,
        "texts": len(all_texts),
        "sha256": texts_sha256(all_texts),
    }


def build_manifest(
    specs: Sequence[AdapterSpec],
    texts: Sequence[str],
    model_path: Path,
    configs: dict[str, dict[str, Any]],
    vectors: dict[str, np.ndarray],
    tolerance: Tolerance,
    retrieval: RetrievalSet | None,
    exercised: Exercised | None = None,
) -> dict[str, Any]:
    """The manifest.json of a baseline (everything but the checksums, which live beside it);
    `exercised` decides the self-comparison warning as in `parity run` (runner.token_exercise)."""
    from parity.version import __version__

    dims = {label: int(v.shape[1]) for label, v in vectors.items()}
    if len(set(dims.values())) != 1:
        raise BaselineError(
            "adapters disagree on the embedding dimension ("
            + ", ".join(f"{k}: {v}" for k, v in dims.items())
            + "); a baseline holds one dimension: give adapters of one model"
        )
    hashes = text_hashes(texts)
    taken: set[str] = set()
    comparison = (
        compare_all(vectors, texts, tolerance, configs, exercised) if len(vectors) > 1 else None
    )
    return {
        "schema": SCHEMA_VERSION,
        "kind": KIND,
        "tool_version": __version__,
        "created": now_utc(),
        "model": model_record(model_path),
        "environment": environment(),
        "texts": {
            "file": TEXTS,
            "count": len(texts),
            "sha256": text_set_hash(hashes),
            "items": hashes,
        },
        "retrieval": _retrieval_record(retrieval),
        "dim": next(iter(dims.values())),
        "tolerance": tolerance.as_dict(),
        "adapters": [
            {
                "label": spec.label,
                "name": spec.name,
                "spec": spec.as_string(),
                "file": vector_file_name(spec.label, taken),
                "describe": portable_describe(configs[spec.label], model_path),
                "model": adapter_model(spec, configs[spec.label], model_path),
            }
            for spec in specs
        ],
        "cross_pairs": [
            {"a": p.a, "b": p.b, "n": p.n, "failures": p.failures, "passed": p.passed}
            # `is not None`: a Comparison is falsy when a pair fails, and those pairs matter most
            for p in (comparison.pairs if comparison is not None else [])
        ],
    }


def create_baseline(
    spec_strings: Sequence[str],
    texts: Sequence[str],
    out: str | Path,
    *,
    model: str | Path | None = None,
    tolerance: Tolerance | None = None,
    retrieval: RetrievalSet | None = None,
    force: bool = False,
    progress: Callable[[str], None] = lambda message: None,
) -> tuple[Path, Path | None]:
    """Embed `texts` with every adapter and write the baseline to `out`.

    Returns the baseline path and where a replaced baseline was kept (None if there was none).
    """
    from parity.modelinfo import resolve_model
    from parity.runner import embed_specs, token_exercise

    out = Path(out)
    ensure_writable(out, force=force)  # fail before minutes of embedding, not after
    specs = parse_specs(list(spec_strings))
    if not specs:
        raise ParityInputError("give at least one --adapter to record")
    texts = validate_texts(texts)  # a non-str or a lone surrogate fails before any model loads
    if not texts:
        raise ParityInputError("no texts to record")
    model_path = resolve_model(model)
    tolerance = tolerance or Tolerance()
    with baseline_lock(
        out
    ):  # a second create/update of `out` is refused now, not overwritten later
        embedded = embed_specs(specs, texts, model_path, progress, retrieval=retrieval)
        manifest = build_manifest(
            specs,
            texts,
            model_path,
            embedded.configs,
            embedded.embeddings,
            tolerance,
            retrieval,
            token_exercise(embedded.tokens),
        )
        progress(f"writing baseline {out}")
        previous = write_baseline(
            out,
            manifest,
            list(texts),
            embedded.embeddings,
            embedded.retrieval,
            force=force,
        )
    return out, previous
