"""Effective settings of two adapters: which differ, which option changes could explain that, and
which way the fix points (towards the model's own configuration, never onto a side nobody sets)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from parity.adapters.base import Option
from parity.errors import SpecError

CONFIG_KEYS = (
    "preprocessing",
    "tokenizer",
    "max_length",
    "pooling",
    "normalize",
    "dtype",
    "instruction",
)

# describe() key -> the cause a difference in it is, in probing order
PROBED_KEYS = {"pooling": "pooling", "max_length": "truncation", "dtype": "dtype"}
# the option that sets describe()["instruction"] (llamaindex: one per mode)
INSTRUCTION_OPTIONS = ("instruction", "prompt", "text_instruction", "query_instruction")


def config_differences(a: dict[str, Any], b: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """Effective settings that differ between two describe() dicts."""
    return [(k, a.get(k), b.get(k)) for k in CONFIG_KEYS if a.get(k) != b.get(k)]


@dataclass(frozen=True)
class SideSettings:
    """What settings diagnosis knows of one side: its label, describe(), options and whether a
    user can change it (a baseline's recorded side cannot be: fixes never point at it)."""

    label: str
    config: Mapping[str, Any]
    options: Mapping[str, Option]
    fixable: bool = True


@dataclass(frozen=True)
class ConfigChange:
    """Rebuild one side with one option changed to what the other side effectively does."""

    cause: str
    side: str  # "a" or "b": the side rebuilt
    key: str
    value: Any
    detail: str
    fix: str


@dataclass
class Changes:
    """The option changes worth trying, and those that could not be expressed (with why)."""

    changes: list[ConfigChange] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)


def config_changes(
    a: SideSettings, b: SideSettings, reference: Mapping[str, Any] | None = None
) -> Changes:
    """Changes worth trying, from the effective settings that differ and the options each side
    has; `reference` is the model's own configuration (max_length, pooling, ...) fixes point to.
    A change a side cannot express (no such option, or a value the option refuses) is skipped."""
    reference = reference or {}
    found = Changes()
    for key, cause in PROBED_KEYS.items():
        if a.config.get(key) == b.config.get(key):
            continue
        order = [("a", a, b), ("b", b, a)]
        if a.config.get(key) == reference.get(key, "float32" if key == "dtype" else None):
            order.reverse()  # rebuild the side that departs from the model first
        for side_name, side, other in order:
            value = other.config.get(key)
            why = _cannot_express(side, key, value, other.label)
            if why:
                found.skipped.append({"probe": f"{side.label}: {key}={value}", "skipped": why})
                continue
            found.changes.append(
                ConfigChange(
                    cause,
                    side_name,
                    key,
                    value,
                    _detail(key, side, other),
                    setting_fix(key, a, b, reference),
                )
            )
    found.changes += _instruction_changes(a, b)
    return found


def _cannot_express(side: SideSettings, key: str, value: Any, other_label: str) -> str | None:
    """Why `key=value` cannot be set on `side`, or None when it can."""
    if key not in side.options:
        return f"{side.label} has no {key} option"
    if value is None:
        return f"{other_label} reports no {key}"
    try:
        side.options[key].coerce(side.label, key, str(value))
    except SpecError as exc:
        return f"{side.label} cannot take it: {exc}"
    return None


def _detail(key: str, side: SideSettings, other: SideSettings) -> str:
    mine, theirs = side.config.get(key), other.config.get(key)
    if key == "max_length":
        return f"{side.label} truncates at {mine} tokens, {other.label} at {theirs}."
    if key == "pooling":
        return f"{side.label} pools with {mine}, {other.label} with {theirs}."
    return f"{side.label} runs in {mine}, {other.label} in {theirs}."


def setting_fix(key: str, a: SideSettings, b: SideSettings, reference: Mapping[str, Any]) -> str:
    """Move the side that departs from the model's configuration back to it (both sides when
    both depart); where that side is not settable (a baseline), restore the settable side to the
    other's value instead."""
    ref = reference.get(key, "float32" if key == "dtype" else None)
    departing = [s for s in (a, b) if ref is not None and s.config.get(key) != ref]
    why = _reference_note(key, ref)
    settable = [s for s in departing if s.fixable and key in s.options]
    if len(departing) == 1 and settable:
        fix = f"set {key}={ref} on {departing[0].label} ({why})"
    elif len(departing) == 2 and len(settable) == 2:
        # both depart: move both to the model's value, never one departing value onto the other
        fix = f"set {key}={ref} on {a.label} and {b.label} ({why})"
    else:
        target, source = (b, a) if b.fixable and key in b.options else (a, b)
        if not target.fixable or key not in target.options:
            return (
                f"make {a.label} and {b.label} use the same {key} (neither can be set here: "
                f"{a.config.get(key)} vs {b.config.get(key)})"
            )
        value = source.config.get(key)
        whose = "the recorded value" if not source.fixable else f"what {source.label} uses"
        fix = f"set {key}={value} on {target.label} to restore {whose}"
        if ref is not None:
            fix += f" ({why})"
    if key == "dtype":
        fix += ", or widen the Euclidean tolerance to the minimum reported for this pair"
    return fix


def _reference_note(key: str, ref: Any) -> str:
    if key == "max_length":
        return f"the model is configured for {ref} tokens"
    if key == "pooling":
        return f"the model's 1_Pooling config says {ref}"
    if key == "normalize":
        return "the model has a Normalize module" if ref else "the model has no Normalize module"
    return f"the reference runs in {ref}"


def _instruction_changes(a: SideSettings, b: SideSettings) -> list[ConfigChange]:
    """Drop the prefix on a side that has one the other lacks (or has another)."""
    changes = []
    for side_name, side, other in (("a", a, b), ("b", b, a)):
        mine, theirs = side.config.get("instruction"), other.config.get("instruction")
        if not mine or mine == theirs:
            continue
        for key in INSTRUCTION_OPTIONS:
            if key not in side.options:
                continue
            target = side if side.fixable else other
            fix = (
                f"use the same prefix on both sides (remove {key} from {side.label} or add it "
                f"to {other.label})"
                if target is side
                else f"set the prefix {mine!r} on {other.label} again to restore the recorded value"
            )
            changes.append(
                ConfigChange(
                    "instruction",
                    side_name,
                    key,
                    "",
                    f"{side.label} prefixes {mine!r}, {other.label} prefixes "
                    + (repr(theirs) if theirs else "nothing")
                    + ".",
                    fix,
                )
            )
    return changes
