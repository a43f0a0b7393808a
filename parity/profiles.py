"""Hypothesis settings profiles: `ci`, `dev` (default), `deep`; chosen by HYPOTHESIS_PROFILE."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

PROFILES = ("ci", "dev", "deep")
_SUPPRESS = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture]

settings.register_profile(
    "ci",
    max_examples=25,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=_SUPPRESS,
    print_blob=True,
)
# Hypothesis loads its own derandomized profile when it sees CI=true, and profiles inherit
# from the loaded one: dev and deep start from "default" so they stay random in CI too.
_DEFAULT = settings.get_profile("default")
for _name, _examples in (("dev", 100), ("deep", 3000)):
    settings.register_profile(
        _name,
        parent=_DEFAULT,
        max_examples=_examples,
        derandomize=False,
        deadline=None,
        suppress_health_check=_SUPPRESS,
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
