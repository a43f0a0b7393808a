"""The catalogue of candidate explanations: text transforms, config changes, vector transforms."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# the last three only come from `parity gate`: the environment moved, not a setting
CAUSES = (
    "strip",
    "newline",
    "whitespace",
    "unicode-normalization",
    "lowercase",
    "truncation",
    "pooling",
    "normalization",
    "dtype",
    "instruction",
    "batch-noise",
    "model-files",
    "library-version",
    "environment",
    "unknown",
)

STAGE_OF = {
    "strip": "input_ids",
    "newline": "input_ids",
    "whitespace": "input_ids",
    "unicode-normalization": "input_ids",
    "lowercase": "input_ids",
    "truncation": "input_ids",
    "instruction": "input_ids",
    "pooling": "pooled",
    "normalization": "normalized",
    "dtype": "token_embeddings",
    "batch-noise": "token_embeddings",
    "model-files": "token_embeddings",
    "library-version": None,
    "environment": None,
    "unknown": None,
}


@dataclass(frozen=True)
class TextTransform:
    """A preprocessing step one side may apply and the other not."""

    name: str
    cause: str
    apply: Callable[[str], str]
    says: str  # what the side that applies it does, as a verb phrase


TEXT_TRANSFORMS = (
    TextTransform("strip", "strip", str.strip, "strips edge whitespace"),
    TextTransform("lstrip", "strip", str.lstrip, "strips leading whitespace"),
    TextTransform("rstrip", "strip", str.rstrip, "strips trailing whitespace"),
    TextTransform("newline", "newline", lambda t: t.replace("\n", " "), 'replaces "\\n" with " "'),
    TextTransform(
        "collapse",
        "whitespace",
        lambda t: re.sub(r"\s+", " ", t),
        "collapses whitespace runs to one space",
    ),
    TextTransform(
        "nfc",
        "unicode-normalization",
        lambda t: unicodedata.normalize("NFC", t),
        "normalizes Unicode to NFC",
    ),
    TextTransform(
        "nfkc",
        "unicode-normalization",
        lambda t: unicodedata.normalize("NFKC", t),
        "normalizes Unicode to NFKC",
    ),
    TextTransform("lowercase", "lowercase", str.lower, "lowercases text"),
)


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
