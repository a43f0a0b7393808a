"""Copy this file into your test suite to check that your embedding stacks agree.

Run it with, for example:

    pytest examples/test_embedding_parity.py \
        --parity-model path/to/model \
        --parity-adapter sentence-transformers --parity-adapter custom:pooling=mean \
        --parity-profile ci

The @given tests below run under parity's hypothesis profile (dev unless --parity-profile or
HYPOTHESIS_PROFILE names ci, dev or deep), which has no deadline: embedding is slower than
hypothesis' 200 ms default. Your other tests keep their own profile. A diverging text is
appended to fixtures/regressions.jsonl, and the `parity-regressions` item replays the entries
recorded on the model under test first on every later run.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given

from parity.strategies import batches, edge_whitespace, newline_texts

TEXTS = ["hello world", "A short product description.", "多语言文本向量", ""]


@pytest.mark.parity
def test_known_texts_embed_the_same(assert_parity: Callable[..., None]) -> None:
    assert_parity(TEXTS)


@pytest.mark.parity
@given(batch=batches(max_size=8))
def test_generated_batches_embed_the_same(
    assert_parity: Callable[..., None], batch: list[str]
) -> None:
    assert_parity(batch)


@pytest.mark.parity
@given(batch=batches(max_size=4, elements=edge_whitespace()))
def test_edge_whitespace_is_handled_the_same(
    assert_parity: Callable[..., None], batch: list[str]
) -> None:
    assert_parity(batch)


@pytest.mark.parity
@given(batch=batches(max_size=4, elements=newline_texts()))
def test_newlines_are_handled_the_same(
    assert_parity: Callable[..., None], batch: list[str]
) -> None:
    assert_parity(batch)
