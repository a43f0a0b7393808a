"""The catalogue of candidate explanations: cause names, their stages, and text transforms."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

# library-version and environment only come from `parity gate` (the environment moved, not a
# setting); model-files also from two sides whose dimensions no Dense layer explains
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
    "non-finite",
    "instruction",
    "quantization",
    "batch-noise",
    "projection",
    "tokenizer",
    "batch-dependence",
    "nondeterminism",
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
    "non-finite": "token_embeddings",  # NaN/Inf rows, usually fp16 overflow
    "quantization": "token_embeddings",  # an int8 graph's weights and activations
    "batch-noise": "token_embeddings",
    "projection": "normalized",  # a Dense layer runs between pooling and Normalize
    "tokenizer": "input_ids",
    "batch-dependence": "token_embeddings",  # padding leaking into the token states or pooling
    "nondeterminism": None,  # the same input gives different outputs: no stage to name
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
