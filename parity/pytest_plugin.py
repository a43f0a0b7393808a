"""pytest plugin: options, fixtures and the `parity` marker. Imports nothing heavy at load time."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("parity", "embedding parity (parity)")
    group.addoption(
        "--parity-model",
        dest="parity_model",
        default=None,
        help="local model directory (default: bundled all-MiniLM-L6-v2)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "parity: an embedding parity check")
