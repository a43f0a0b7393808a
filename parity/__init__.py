"""parity: do your embedding stacks produce the same vectors, and if not, why?

The public names load on first use (PEP 562), so `import parity` (and the pytest plugin, which
every pytest run of an environment with parity installed loads) imports neither numpy nor torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from parity.errors import (
    AdapterError,
    AdapterUnavailable,
    BaselineError,
    ComparisonError,
    ModelNotFound,
    ParityError,
    ParityInputError,
    SpecError,
)
from parity.version import __version__

if TYPE_CHECKING:
    from parity.adapters import Adapter, AdapterSpec, parse_specs, register
    from parity.compare import (
        Comparison,
        PairResult,
        SelfComparisonWarning,
        compare_all,
        compare_pair,
    )
    from parity.metrics import Tolerance, deltas
    from parity.report.results import load_results
    from parity.runner import RunResult, run
    from parity.texts import builtin_corpus, load_texts

_LAZY = {
    "Adapter": "parity.adapters",
    "AdapterSpec": "parity.adapters",
    "parse_specs": "parity.adapters",
    "register": "parity.adapters",
    "Comparison": "parity.compare",
    "PairResult": "parity.compare",
    "SelfComparisonWarning": "parity.compare",
    "Tolerance": "parity.metrics",
    "compare_all": "parity.compare",
    "compare_pair": "parity.compare",
    "deltas": "parity.metrics",
    "RunResult": "parity.runner",
    "run": "parity.runner",
    "builtin_corpus": "parity.texts",
    "load_texts": "parity.texts",
    "load_results": "parity.report.results",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'parity' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "Adapter",
    "AdapterError",
    "AdapterSpec",
    "AdapterUnavailable",
    "BaselineError",
    "Comparison",
    "ComparisonError",
    "ModelNotFound",
    "PairResult",
    "ParityError",
    "ParityInputError",
    "RunResult",
    "SelfComparisonWarning",
    "SpecError",
    "Tolerance",
    "__version__",
    "builtin_corpus",
    "compare_all",
    "compare_pair",
    "deltas",
    "load_results",
    "load_texts",
    "parse_specs",
    "register",
    "run",
]
