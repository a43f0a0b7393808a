"""Effective settings of two adapters: which differ, and which option changes could explain that."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

CONFIG_KEYS = (
    "preprocessing",
    "tokenizer",
    "max_length",
    "pooling",
    "normalize",
    "dtype",
    "instruction",
)


def config_differences(a: dict[str, Any], b: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """Effective settings that differ between two describe() dicts."""
    return [(k, a.get(k), b.get(k)) for k in CONFIG_KEYS if a.get(k) != b.get(k)]


@dataclass(frozen=True)
class ConfigChange:
    """Rebuild one side with one option changed to what the other side effectively does."""

    cause: str
    side: str  # "a" or "b": the side rebuilt
    key: str
    value: Any
    detail: str
    fix: str


def config_changes(
    a_label: str,
    a_cfg: dict[str, Any],
    a_options: set[str],
    b_label: str,
    b_cfg: dict[str, Any],
    b_options: set[str],
) -> list[ConfigChange]:
    """Changes worth trying, from the effective settings that differ and the options each side has."""
    changes: list[ConfigChange] = []
    sides = (
        ("a", a_label, a_cfg, a_options, b_label, b_cfg),
        ("b", b_label, b_cfg, b_options, a_label, a_cfg),
    )
    for side, label, cfg, options, other_label, other in sides:
        if cfg.get("max_length") != other.get("max_length") and "max_length" in options:
            value = other.get("max_length")
            changes.append(
                ConfigChange(
                    "truncation",
                    side,
                    "max_length",
                    value,
                    f"{label} truncates at {cfg.get('max_length')} tokens, {other_label} at {value}.",
                    f"set max_length={value} on {label} (the model's configured limit is what "
                    f"{other_label} uses)",
                )
            )
        if (
            cfg.get("pooling") != other.get("pooling")
            and "pooling" in options
            and other.get("pooling")
        ):
            value = other["pooling"]
            changes.append(
                ConfigChange(
                    "pooling",
                    side,
                    "pooling",
                    value,
                    f"{label} pools with {cfg.get('pooling')}, {other_label} with {value}.",
                    f"set pooling={value} on {label} (the model's 1_Pooling config)",
                )
            )
        if cfg.get("dtype") not in (None, "float32") and "dtype" in options:
            changes.append(
                ConfigChange(
                    "dtype",
                    side,
                    "dtype",
                    "float32",
                    f"{label} runs in {cfg.get('dtype')}, {other_label} in {other.get('dtype')}.",
                    f"set dtype=float32 on {label}, or widen the Euclidean tolerance to the "
                    "minimum reported for this pair",
                )
            )
        for key in ("instruction", "prompt"):
            if (
                cfg.get("instruction")
                and key in options
                and cfg.get("instruction") != other.get("instruction")
            ):
                changes.append(
                    ConfigChange(
                        "instruction",
                        side,
                        key,
                        "",
                        f"{label} prefixes {cfg.get('instruction')!r}, {other_label} prefixes "
                        + (repr(other["instruction"]) if other.get("instruction") else "nothing")
                        + ".",
                        f"use the same {key} on both sides (remove {key} from {label} or add it to "
                        f"{other_label})",
                    )
                )
    return changes
