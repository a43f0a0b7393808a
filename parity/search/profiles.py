"""Hypothesis settings profiles: `ci`, `dev` (default), `deep`.

Every profile has no deadline: embedding a batch takes longer than hypothesis' 200 ms default,
and the first call of a session also loads the model. The settings objects live in SETTINGS;
the names are registered with hypothesis only where nobody registered them first, so a
project's own `ci` profile stays the project's (and so does hypothesis' built-in `ci`, which
it loads under CI=true: replacing it would change every test of a CI run). The pytest plugin applies them to parity
tests only (parity.pytest_plugin); `parity fuzz` reads them through load_profile().
"""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis.errors import InvalidArgument

_SUPPRESS = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture]
_OWN: dict[str, dict[str, Any]] = {
    "ci": {"max_examples": 25, "derandomize": True, "database": None, "print_blob": True},
    "dev": {"max_examples": 100, "derandomize": False},
    "deep": {"max_examples": 3000, "derandomize": False},
}
PROFILES = tuple(_OWN)
DEFAULT_PROFILE = "dev"

# Hypothesis loads a derandomized profile of its own when it sees CI=true, and a new profile
# inherits from the loaded one: ours all start from "default", so CI=true changes none of them.
SETTINGS: dict[str, settings] = {
    name: settings(
        parent=settings.get_profile("default"),
        deadline=None,
        suppress_health_check=_SUPPRESS,
        **values,
    )
    for name, values in _OWN.items()
}


def register_profiles() -> list[str]:
    """Register ci, dev and deep with hypothesis where the name is still free; return those
    registered. A profile the project registered under the same name is left as it is."""
    registered = []
    for name, chosen in SETTINGS.items():
        try:
            free = settings.get_profile(name) is chosen
        except InvalidArgument:
            free = True
        if free:
            settings.register_profile(name, chosen)
            registered.append(name)
    return registered


register_profiles()


def profile_name(explicit: str | None = None) -> str:
    """The explicit name, else HYPOTHESIS_PROFILE, else `dev`; an unknown name is an error."""
    name = explicit or os.environ.get("HYPOTHESIS_PROFILE") or DEFAULT_PROFILE
    if name not in PROFILES:
        from parity.errors import ParityInputError

        raise ParityInputError(f"unknown profile {name!r}; choose from {', '.join(PROFILES)}")
    return name


def parity_profile_name(explicit: str | None = None) -> str:
    """The profile for parity tests under pytest: the explicit name, else HYPOTHESIS_PROFILE
    when it names one of ours, else `dev`. Another HYPOTHESIS_PROFILE is the project's own."""
    from_env = os.environ.get("HYPOTHESIS_PROFILE")
    return explicit or (from_env if from_env in PROFILES else DEFAULT_PROFILE)


def load_profile(explicit: str | None = None) -> settings:
    """The settings of profile_name(explicit), for `parity fuzz`; loaded as hypothesis' current
    profile only when the name is registered to ours (never over a project's own profile)."""
    name = profile_name(explicit)
    chosen = SETTINGS[name]
    if settings.get_profile(name) is chosen:
        settings.load_profile(name)
    return chosen
