"""diagnosed(): a real run of two adapters, diagnosed, its first pair (shared by the tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from parity.adapters import parse_specs
from parity.diagnose import diagnose_run
from parity.metrics import Tolerance
from parity.runner import run


def diagnosed(model: Path, specs: list[str], texts: list[str]) -> Any:
    """The first pair of a diagnosed run; its cause counts must add up to its failures."""
    result = run(parse_specs(specs), texts, model=model, tolerance=Tolerance(), keep_adapters=True)
    try:
        diagnose_run(result)
    finally:
        for adapter in result.adapters.values():
            adapter.close()
    pair = result.comparison.pairs[0]
    assert sum(c["explained"] for c in pair.causes) == pair.failures
    return pair
