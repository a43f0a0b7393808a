"""parity: do your embedding stacks produce the same vectors, and if not, why?"""

from __future__ import annotations

from parity.adapters import Adapter, AdapterSpec, parse_specs, register
from parity.compare import (
    Comparison,
    PairResult,
    SelfComparisonWarning,
    Tolerance,
    compare_all,
    compare_pair,
    deltas,
)
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
from parity.runner import RunResult, run
from parity.texts import builtin_corpus, load_texts
from parity.version import __version__

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
    "load_texts",
    "parse_specs",
    "register",
    "run",
]
