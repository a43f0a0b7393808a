"""The documented import path of the hypothesis strategies (they live in parity.search.strategies)."""

from parity.search.strategies import *  # noqa: F403
from parity.search.strategies import __all__ as __all__
