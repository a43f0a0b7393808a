"""Shared fixtures: tiny whitespace-sensitive models built once per session, the bundled model."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from parity.adapters import Adapter, AdapterSpec

# tests that use the embedding cache pass --cache DIR; nothing else may reuse another test's
# vectors (subprocesses inherit this)
os.environ["PARITY_CACHE"] = "off"
# on GitHub Actions every command a test runs would append to the real job summary and print
# ::error lines into the job's log: tests that check that set them with monkeypatch
for _name in ("GITHUB_STEP_SUMMARY", "GITHUB_ACTIONS"):
    os.environ.pop(_name, None)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from parity.tinymodels import KINDS, build_tiny_model

    root = tmp_path_factory.mktemp("tiny-models")
    return {kind: build_tiny_model(kind, root / kind, seed=0) for kind in KINDS}


@pytest.fixture(scope="session")
def bpe_model(tiny_models: dict[str, Path]) -> Path:
    return tiny_models["bpe"]


@pytest.fixture(scope="session")
def minilm() -> Path:
    from parity.modelinfo import bundled_model_path

    return bundled_model_path()


@pytest.fixture(scope="session")
def embedder() -> Iterator[Callable[[str, Path, list[str]], np.ndarray]]:
    """embed(spec, model, texts): real adapters, each loaded once per session."""
    loaded: dict[tuple[str, str], Adapter] = {}

    def embed(spec: str, model: Path, texts: list[str]) -> np.ndarray:
        key = (spec, str(model))
        if key not in loaded:
            loaded[key] = AdapterSpec.parse(spec).build(model)
        return loaded[key].embed(texts)

    yield embed
    for adapter in loaded.values():
        adapter.close()
