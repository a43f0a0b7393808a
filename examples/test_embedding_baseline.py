"""Copy this file into your test suite to freeze today's vectors and catch an upgrade that moves them.

The first run records the vectors next to this file (in test_embedding_baseline/<test name>/)
and fails once, saying so: commit that directory. Later runs compare every adapter with its
recorded vectors and fail with the worst text, each metric against its tolerance, and what
changed in the environment. After an intended change:

    pytest examples/test_embedding_baseline.py --parity-regen
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

RELEASE_TEXTS = [
    "How do I reset my password?",
    " leading space",
    "trailing newline\n",
    "line one\nline two",
    "多语言文本向量",
]


@pytest.mark.parity
def test_release_vectors_are_unchanged(parity_baseline: Callable[..., None]) -> None:
    parity_baseline(RELEASE_TEXTS)
