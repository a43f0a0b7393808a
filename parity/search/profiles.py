"""Hypothesis settings profiles: `ci`, `dev` (default), `deep`; chosen by HYPOTHESIS_PROFILE."""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, settings

_SUPPRESS = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture]
_OWN: dict[str, dict[str, Any]] = {
    "ci": {"max_examples": 25, "derandomize": True, "database": None, "print_blob": True},
    "dev": {"max_examples": 100, "derandomize": False},
    "deep": {"max_examples": 3000, "derandomize": False},
}
PROFILES = tuple(_OWN)

# Hypothesis loads a derandomized profile of its own when it sees CI=true, and a new profile
# inherits from the loaded one: ours all start from "default", so CI=true changes none of them.
for _name, _settings in _OWN.items():
    settings.register_profile(
        _name,
        parent=settings.get_profile("default"),
        deadline=None,
        suppress_health_check=_SUPPRESS,
        **_settings,
    )


def profile_name(explicit: str | None = None) -> str:
    """The explicit name, else HYPOTHESIS_PROFILE, else `dev`."""
    name = explicit or os.environ.get("HYPOTHESIS_PROFILE") or "dev"
    if name not in PROFILES:
        from parity.errors import ParityInputError

        raise ParityInputError(f"unknown profile {name!r}; choose from {', '.join(PROFILES)}")
    return name


def load_profile(explicit: str | None = None) -> settings:
    name = profile_name(explicit)
    settings.load_profile(name)
    return settings.get_profile(name)
