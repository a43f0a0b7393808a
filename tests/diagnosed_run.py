"""diagnosed(): a real run of two adapters, diagnosed, its first pair; rebuilt_embeds(): what
diagnosis's rebuilt sides embed (shared by the tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from parity.adapters import parse_specs
from parity.adapters.base import Adapter
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


def rebuilt_embeds(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Texts each embed() of a rebuilt side (diagnosis's probes) was given, as they happen."""
    calls: list[int] = []
    original = Adapter.embed

    def counting(self: Adapter, texts: Any) -> Any:
        if self.reuse_loaded:
            calls.append(len(texts))
        return original(self, texts)

    monkeypatch.setattr(Adapter, "embed", counting)
    return calls
