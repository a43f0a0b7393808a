"""Batched shrinking: every candidate reduction of a text is checked in one predicate call.

Hypothesis shrinks one example at a time, which costs one model forward per step per adapter.
Here each round builds every reduction of the current text at once (chunk and character
deletions, characters replaced by simpler ones), the predicate embeds them all in one call per
adapter, and the simplest one that still fails becomes the next text.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterable, Sequence

__all__ = ["BatchPredicate", "char_rank", "reductions", "shrink_text", "simplicity"]

BatchPredicate = Callable[[list[str]], Sequence[bool]]
"""Given candidate texts, say which of them still fail (one flag per text, in order)."""

# Simplest first: a lowercase letter, a digit, a plain space, a newline.
_PREFERRED = "abcdefghijklmnopqrstuvwxyz0123456789 \n"
_RANKS = {char: rank for rank, char in enumerate(_PREFERRED)}
_REPLACEMENTS = ("a", "0", " ", "\n")


def char_rank(char: str) -> int:
    """How simple a character is: a-z, 0-9, " ", "\\n" first, then by code point."""
    rank = _RANKS.get(char)
    return rank if rank is not None else len(_PREFERRED) + ord(char)


def simplicity(text: str) -> tuple[int, tuple[int, ...]]:
    """Sort key of texts, simplest first: shorter, then simpler characters from the left."""
    return len(text), tuple(char_rank(char) for char in text)


def _simpler_chars(char: str) -> Iterable[str]:
    decomposed = unicodedata.normalize("NFKD", char)[:1]
    for other in (*_REPLACEMENTS, char.lower(), decomposed):
        if other and len(other) == 1 and char_rank(other) < char_rank(char):
            yield other


FINE_LENGTH = 64
"""Texts up to this long get every reduction; longer ones get coarse steps (see reductions())."""


def reductions(text: str) -> list[str]:
    """Every text one step simpler than `text`, simplest first, without duplicates.

    Steps: keep only one or two adjacent characters, a prefix or a suffix; delete a chunk of
    1, 2, 4, ... characters anywhere; strip either edge; replace one character, or every
    occurrence of it, by a simpler one ("a", "0", " ", "\\n", its lowercase or the first
    character of its compatibility decomposition). Past FINE_LENGTH characters the positions
    are sampled (about FINE_LENGTH of them) and chunks step by their size, so a long text
    yields a few thousand candidates rather than a number quadratic in its length.
    """
    n = len(text)
    stride = max(1, n // FINE_LENGTH)
    candidates = {"", text.strip(), text.lstrip(), text.rstrip()}
    for start in range(0, n, stride):
        candidates.update((text[start : start + 2], text[start], text[:start], text[start:]))
        candidates.add(text[:start] + text[start + 1 :])
    size = 1 if n <= FINE_LENGTH else max(1, n // FINE_LENGTH)
    while size < n:
        step = 1 if n <= FINE_LENGTH else size
        for start in range(0, n - size + 1, step):
            candidates.add(text[:start] + text[start + size :])
        size *= 2
    for index, char in enumerate(text):
        for other in _simpler_chars(char):
            if n <= FINE_LENGTH or index % stride == 0:
                candidates.add(text[:index] + other + text[index + 1 :])
            candidates.add(text.replace(char, other))
    key = simplicity(text)
    return sorted((c for c in candidates if simplicity(c) < key), key=simplicity)


def shrink_text(
    text: str,
    fails: BatchPredicate,
    *,
    max_candidates: int = 512,
    max_rounds: int = 200,
) -> str:
    """The simplest text reachable from `text` by reductions() while `fails` still holds.

    `text` must fail. Each round calls `fails` once with the reductions of the current text
    not tried before (at most `max_candidates`: the simplest half of them, then an even spread
    over the rest, so small steps are tried too) and moves to the simplest that fails; it stops
    when none does, so the result fails and no reduction of it that was tried does.
    """
    tried: set[str] = {text}
    current = text
    for _ in range(max_rounds):
        candidates = _spread([c for c in reductions(current) if c not in tried], max_candidates)
        if not candidates:
            break
        tried.update(candidates)
        failing = [c for c, failed in zip(candidates, fails(candidates), strict=True) if failed]
        if not failing:
            break
        current = min(failing, key=simplicity)
    return current


def _spread(candidates: list[str], limit: int) -> list[str]:
    if len(candidates) <= limit:
        return candidates
    head = limit // 2
    rest = candidates[head:]
    step = len(rest) / (limit - head)
    return candidates[:head] + [rest[int(index * step)] for index in range(limit - head)]
