"""parity.search.shrink: batched shrinking finds minimal texts in few predicate calls."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from parity.search.shrink import char_rank, reductions, shrink_text, simplicity
from parity.search.strategies import WHITESPACE_CHARS, edge_whitespace, newline_texts

FAST = settings(max_examples=50, deadline=None, database=None)


class Counting:
    """A batch predicate built from a per-text one, recording every call's batch."""

    def __init__(self, fails: Callable[[str], bool]) -> None:
        self.fails = fails
        self.calls: list[list[str]] = []

    def __call__(self, texts: list[str]) -> Sequence[bool]:
        self.calls.append(list(texts))
        return [self.fails(text) for text in texts]


def strip_differs(text: str) -> bool:
    return text != text.strip()


def test_simplest_characters_come_first() -> None:
    assert [char_rank(c) for c in "a0 \n"] == sorted(char_rank(c) for c in "a0 \n")
    assert char_rank("z") < char_rank("0") < char_rank(" ") < char_rank("\n") < char_rank("!")
    assert char_rank("\t") > char_rank("\n")
    assert simplicity("b") < simplicity("aa") < simplicity("ab")


def test_reductions_are_distinct_simpler_and_sorted() -> None:
    text = "Ab\u3000c\n"
    found = reductions(text)
    assert len(found) == len(set(found))
    assert all(simplicity(c) < simplicity(text) for c in found)
    assert found == sorted(found, key=simplicity)
    assert "" in found and "Ab\u3000c" in found  # deletions, an edge strip
    assert "ab\u3000c\n" in found and "Ab c\n" in found  # simpler characters
    assert reductions("") == []


def test_edge_whitespace_shrinks_to_one_space() -> None:
    fails = Counting(strip_differs)
    assert shrink_text("\u3000 The quick search index!\t", fails) == " "


def test_newline_shrinks_to_a_lone_newline() -> None:
    assert shrink_text("line one\r\n  line two", Counting(lambda t: "\n" in t)) == "\n"


def test_normalization_shrinks_to_a_letter_and_its_combining_mark() -> None:
    def not_nfc(text: str) -> bool:
        return unicodedata.normalize("NFC", text) != text

    assert shrink_text("Cafe\u0301 au lait", Counting(not_nfc)) == "a\u0301"


def test_conjunctions_shrink_to_the_shortest_text_holding_both() -> None:
    fails = Counting(lambda t: "x" in t and t.endswith(" "))
    assert shrink_text("abc x yz  ", fails) == "x "


def test_each_round_is_one_call_with_every_candidate() -> None:
    text = "\u3000 The quick brown search index!\t"
    fails = Counting(strip_differs)
    minimal = shrink_text(text, fails)
    assert minimal == " "
    # One call per round, every reduction of the text in the first one.
    assert len(fails.calls) <= 4
    assert fails.calls[0] == reductions(text)
    assert len(fails.calls[0]) > 2 * len(text)
    checked = [c for call in fails.calls for c in call]
    assert len(checked) == len(set(checked))  # no candidate embedded twice


def test_candidates_per_call_are_capped() -> None:
    fails = Counting(strip_differs)
    assert shrink_text(" " + "abcdefgh" * 8, fails, max_candidates=16) == " "
    assert all(len(call) <= 16 for call in fails.calls)


def test_a_text_with_no_failing_reduction_is_kept() -> None:
    fails = Counting(lambda t: t == "exactly this")
    assert shrink_text("exactly this", fails) == "exactly this"
    assert len(fails.calls) == 1


@FAST
@given(edge_whitespace())
def test_any_edge_whitespace_text_shrinks_to_one_space(text: str) -> None:
    assert shrink_text(text, Counting(strip_differs)) == " "


@FAST
@given(newline_texts())
def test_any_newline_text_shrinks_to_one_line_break_character(text: str) -> None:
    minimal = shrink_text(text, Counting(lambda t: "\n" in t or "\r" in t))
    assert minimal in ("\n", "\r")


@FAST
@given(st.text(min_size=1), st.sampled_from(sorted(WHITESPACE_CHARS)))
def test_results_fail_and_no_reduction_of_them_does(text: str, char: str) -> None:
    def fails(t: str) -> bool:
        return char in t and len(t) >= 2

    text = text + char
    if not fails(text):
        text = "a" + text
    minimal = shrink_text(text, Counting(fails))
    assert fails(minimal)
    assert not any(fails(c) for c in reductions(minimal))
    assert len(minimal) == 2


def test_long_texts_shrink_by_small_steps_when_big_ones_pass() -> None:
    # Only texts of 100 or more characters fail (as with truncation): with few candidates a
    # round, the simplest ones (short texts) all pass, and the spread keeps small steps in.
    fails = Counting(lambda t: len(t) >= 100)
    assert shrink_text("xyz" * 40, fails, max_candidates=64) == "a" * 100
    assert all(len(call) <= 64 for call in fails.calls)
    assert len(fails.calls) <= 40


def test_long_texts_shrink_in_bounded_steps() -> None:
    import random

    rng = random.Random(0)
    text = "".join(rng.choice("abcdefgh XYZ\n\t") for _ in range(2000))
    assert len(reductions(text)) < 2000  # sampled positions, not every one
    sent: list[int] = []

    def at_least_1990(candidates: list[str]) -> list[bool]:
        sent.append(len(candidates))
        return [len(c) >= 1990 for c in candidates]

    result = shrink_text(text, at_least_1990)
    assert len(result) == 1990
    assert set(result) == {"a"}
    assert sum(sent) < 20_000
