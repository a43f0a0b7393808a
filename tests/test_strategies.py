"""Each strategy in parity.strategies generates what its docstring says, and shrinks as it says."""

from __future__ import annotations

import subprocess
import sys
import unicodedata
from typing import Any

import pytest
from hypothesis import Phase, find, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from parity.search.strategies import (
    NORMALIZATION_FORMS,
    WHITESPACE_CHARS,
    batches,
    edge_whitespace,
    near_limit_texts,
    newline_texts,
    normalization_variants,
    plain_texts,
    texts,
    unicode_texts,
    whitespace,
)

FAST = settings(max_examples=50, deadline=None, database=None)
SHRINK = settings(max_examples=2000, deadline=None, database=None)
# Showing that a kind of text is reachable needs no shrinking, which is most of find()'s time.
REACH = settings(max_examples=2000, deadline=None, database=None, phases=[Phase.generate])

ZWJ = "\u200d"


def is_surrogate(char: str) -> bool:
    return 0xD800 <= ord(char) <= 0xDFFF


def is_symbol(char: str) -> bool:
    return unicodedata.category(char) == "So"


def has_zwj_emoji_sequence(text: str) -> bool:
    """An emoji, then ZWJ, then another emoji (a skin tone or U+FE0F may sit before the ZWJ)."""
    for index, char in enumerate(text):
        if char == ZWJ and 0 < index < len(text) - 1 and is_symbol(text[index + 1]):
            before = text[:index].rstrip("\ufe0f\U0001f3fb\U0001f3fc\U0001f3fd\U0001f3fe\U0001f3ff")
            if before and is_symbol(before[-1]):
                return True
    return False


# --- whitespace ------------------------------------------------------------------------------


def test_whitespace_chars_cover_every_code_point_python_calls_space() -> None:
    isspace = {chr(code) for code in range(sys.maxunicode + 1) if chr(code).isspace()}
    zero_width = {"\u200b", "\u200c", "\u200d", "\u2060", "\ufeff"}
    assert WHITESPACE_CHARS == isspace | zero_width
    assert len(WHITESPACE_CHARS) == 34


@FAST
@given(whitespace())
def test_whitespace_runs_hold_only_whitespace_chars(run: str) -> None:
    assert 1 <= len(run) <= 8
    assert set(run) <= WHITESPACE_CHARS


@FAST
@given(whitespace(min_size=3, max_size=4))
def test_whitespace_respects_its_size_bounds(run: str) -> None:
    assert 3 <= len(run) <= 4


def test_whitespace_shrinks_to_one_space() -> None:
    assert find(whitespace(), lambda run: True, settings=SHRINK) == " "
    assert find(whitespace(), lambda run: len(run) >= 2, settings=SHRINK) == "  "


def test_whitespace_reaches_zero_width_and_bom() -> None:
    for char in ("\ufeff", "\u200b", "\u2060", "\u3000", "\x1c"):
        assert char in find(whitespace(), lambda run, char=char: char in run, settings=REACH)


# --- plain and edge whitespace ---------------------------------------------------------------


@FAST
@given(plain_texts())
def test_plain_texts_are_capitalized_sentences_without_edge_whitespace(text: str) -> None:
    assert text[0].isupper()
    assert text[-1] in ".?!"
    assert text == text.strip()
    assert text[:-1].replace(" ", "").isalpha()


@pytest.mark.parametrize("where", ["start", "end", "both"])
@FAST
@given(data=st.data())
def test_edge_whitespace_pads_exactly_the_edges_asked_for(where: str, data: Any) -> None:
    text = data.draw(edge_whitespace(where=(where,)))
    assert (text[0] in WHITESPACE_CHARS) == (where in ("start", "both"))
    assert (text[-1] in WHITESPACE_CHARS) == (where in ("end", "both"))
    base = text.strip("".join(WHITESPACE_CHARS))
    assert base[0].isupper() and base[-1] in ".?!"


@FAST
@given(edge_whitespace(st.just("x y")))
def test_edge_whitespace_keeps_a_given_base_text(text: str) -> None:
    assert text != "x y"
    start, _, end = text.partition("x y")
    assert set(start + end) <= WHITESPACE_CHARS
    assert start or end


def test_edge_whitespace_shrinks_to_one_space_at_the_first_edge() -> None:
    assert find(edge_whitespace(), lambda text: True, settings=SHRINK) == " The."
    assert find(edge_whitespace(where=("end",)), lambda text: True, settings=SHRINK) == "The. "


@pytest.mark.parametrize("where", [(), ("left",), ("start", "middle")])
def test_edge_whitespace_rejects_unknown_edges(where: tuple[str, ...]) -> None:
    with pytest.raises(InvalidArgument, match="where="):
        edge_whitespace(where=where)


# --- newlines ---------------------------------------------------------------------------------


@FAST
@given(newline_texts())
def test_newline_texts_always_break_a_line(text: str) -> None:
    assert "\n" in text or "\r" in text


@pytest.mark.parametrize(
    "feature",
    [
        lambda text: "\r\n" in text,
        lambda text: "\r" in text.replace("\r\n", ""),
        lambda text: "\n\n" in text.replace("\r", ""),
        lambda text: any(line.startswith(("  ", "\t")) for line in text.splitlines()),
    ],
    ids=["crlf", "lone-cr", "blank-line", "indented-line"],
)
def test_newline_texts_reach_every_line_break_kind(feature: Any) -> None:
    assert feature(find(newline_texts(), feature, settings=REACH))


def test_newline_texts_shrink_to_a_sentence_and_one_newline() -> None:
    assert find(newline_texts(), lambda text: True, settings=SHRINK) == "The.\n"


# --- unicode ----------------------------------------------------------------------------------


@FAST
@given(unicode_texts())
def test_unicode_texts_have_no_surrogates_by_default(text: str) -> None:
    assert text
    assert not any(is_surrogate(char) for char in text)


def test_unicode_texts_allow_surrogates_on_request() -> None:
    found = find(
        unicode_texts(allow_surrogates=True),
        lambda text: any(is_surrogate(char) for char in text),
        settings=SHRINK,
    )
    assert found == "\ud800"
    with pytest.raises(UnicodeEncodeError):
        found.encode("utf-8")


@pytest.mark.parametrize(
    "feature",
    [
        has_zwj_emoji_sequence,
        lambda text: any(unicodedata.bidirectional(char) in ("R", "AL") for char in text),
        lambda text: any(unicodedata.combining(char) for char in text),
        lambda text: any(0x1F3FB <= ord(char) <= 0x1F3FF for char in text),
        lambda text: any(unicodedata.category(char) == "Cc" for char in text),
        lambda text: any(0x4E00 <= ord(char) <= 0x9FFF for char in text),
        lambda text: any(0x0905 <= ord(char) <= 0x0939 for char in text),
        lambda text: any(0x0410 <= ord(char) <= 0x044F for char in text),
    ],
    ids=[
        "zwj-sequence",
        "rtl",
        "combining-mark",
        "skin-tone",
        "control",
        "cjk",
        "devanagari",
        "cyrillic",
    ],
)
def test_unicode_texts_reach_every_kind(feature: Any) -> None:
    assert feature(find(unicode_texts(), feature, settings=REACH))


def test_plain_unicode_and_normalization_strategies_shrink_as_documented() -> None:
    assert find(plain_texts(), lambda text: True, settings=SHRINK) == "The."
    assert find(unicode_texts(), lambda text: True, settings=SHRINK) == "a"
    assert find(normalization_variants(), lambda forms: True, settings=SHRINK)["NFC"] == "é"


def test_zwj_detector_tells_sequences_from_lone_joiners() -> None:
    assert has_zwj_emoji_sequence("👨‍👩‍👧‍👦")
    assert has_zwj_emoji_sequence("👩🏽‍💻")
    assert not has_zwj_emoji_sequence("a\u200db")
    assert not has_zwj_emoji_sequence("👍 👍")


# --- normalization ----------------------------------------------------------------------------


@FAST
@given(normalization_variants())
def test_normalization_variants_are_the_true_forms_of_one_text(forms: dict[str, str]) -> None:
    assert tuple(forms) == NORMALIZATION_FORMS
    assert len(set(forms.values())) >= 2
    # Canonical forms are recoverable from each other; compatibility forms from any form.
    for form in ("NFC", "NFD"):
        for source in ("NFC", "NFD"):
            assert unicodedata.normalize(form, forms[source]) == forms[form]
    for form in ("NFKC", "NFKD"):
        for source in NORMALIZATION_FORMS:
            assert unicodedata.normalize(form, forms[source]) == forms[form]


def test_normalization_variants_of_a_given_text() -> None:
    forms = find(normalization_variants(st.just("ﬁé")), lambda forms: True, settings=SHRINK)
    assert forms == {"NFC": "ﬁé", "NFD": "ﬁe\u0301", "NFKC": "fié", "NFKD": "fie\u0301"}


@FAST
@given(normalization_variants(st.sampled_from(["plain ascii", "Å", "\u2126"])))
def test_normalization_variants_filter_out_texts_whose_forms_all_agree(
    forms: dict[str, str],
) -> None:
    # "plain ascii" and OHM SIGN (every form is Greek omega) have four equal forms.
    assert forms["NFC"] == "Å"
    assert forms["NFD"] == "A\u030a"


# --- near the token limit ---------------------------------------------------------------------

TRAINING = [
    "the cat sat on the mat and the dog ran to the house by the river",
    "a quick search of the vector index returns the model token text",
    "good morning, the train ticket price is small; tea or coffee in the rain?",
    "read write open close, red green blue: music at night from the city",
]


def _bpe() -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<s>", "</s>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(TRAINING, trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        special_tokens=[
            ("<s>", tokenizer.token_to_id("<s>")),
            ("</s>", tokenizer.token_to_id("</s>")),
        ],
    )
    return tokenizer, {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>"}


def _wordpiece() -> Any:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(
        vocab_size=80, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]"], show_progress=False
    )
    tokenizer.train_from_iterator(TRAINING, trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        special_tokens=[
            ("[CLS]", tokenizer.token_to_id("[CLS]")),
            ("[SEP]", tokenizer.token_to_id("[SEP]")),
        ],
    )
    specials = {
        "cls_token": "[CLS]",
        "sep_token": "[SEP]",
        "pad_token": "[PAD]",
        "unk_token": "[UNK]",
    }
    return tokenizer, specials


@pytest.fixture(scope="module", params=["bpe", "wordpiece"])
def tokenizer(request: pytest.FixtureRequest) -> Any:
    from transformers import PreTrainedTokenizerFast

    backend, specials = {"bpe": _bpe, "wordpiece": _wordpiece}[request.param]()
    fast = PreTrainedTokenizerFast(tokenizer_object=backend, model_max_length=10_000, **specials)
    # Words must cost several tokens each, or the window would be trivially easy to hit.
    assert len(fast("whitespace coffee")["input_ids"]) > 4
    return fast


def token_count(tokenizer: Any, text: str) -> int:
    return len(tokenizer(text)["input_ids"])


@pytest.mark.parametrize(("max_length", "window"), [(32, 3), (64, 0), (20, 1), (128, 2)])
@FAST
@given(data=st.data())
def test_near_limit_texts_land_within_their_window(
    tokenizer: Any, max_length: int, window: int, data: Any
) -> None:
    text = data.draw(near_limit_texts(tokenizer, max_length, window=window))
    assert abs(token_count(tokenizer, text) - max_length) <= window


def test_near_limit_texts_reach_both_ends_of_the_window(tokenizer: Any) -> None:
    strategy = near_limit_texts(tokenizer, 40, window=3)
    shortest = find(strategy, lambda text: True, settings=SHRINK)
    assert token_count(tokenizer, shortest) == 37
    assert set(shortest.split()) == {"the"}
    longest = find(strategy, lambda text: token_count(tokenizer, text) == 43, settings=REACH)
    assert token_count(tokenizer, longest) == 43


def test_near_limit_texts_say_when_special_tokens_alone_overshoot(tokenizer: Any) -> None:
    with pytest.raises(InvalidArgument, match="empty text already has 2 tokens"):
        find(near_limit_texts(tokenizer, 1, window=0), lambda text: True, settings=SHRINK)


def three_tokens_a_word(text: str) -> dict[str, list[int]]:
    """A stand-in tokenizer: 2 special tokens, 3 per word, 1 per attached comma."""
    pieces = text.split()
    return {"input_ids": [0, 1] + [7] * (3 * len(pieces) + text.count(","))}


@pytest.mark.parametrize("max_length", [30, 31, 32])
@FAST
@given(data=st.data())
def test_near_limit_texts_hit_counts_no_word_fits_by_attaching_commas(
    max_length: int, data: Any
) -> None:
    text = data.draw(near_limit_texts(three_tokens_a_word, max_length, window=0))
    assert len(three_tokens_a_word(text)["input_ids"]) == max_length
    assert text.count(",") == (max_length - 2) % 3


@pytest.mark.parametrize(("max_length", "window"), [(0, 3), (16, -1)])
def test_near_limit_texts_reject_bad_arguments(max_length: int, window: int) -> None:
    with pytest.raises(InvalidArgument):
        near_limit_texts(lambda text: {"input_ids": []}, max_length, window=window)


# --- mixes and batches ------------------------------------------------------------------------


@FAST
@given(texts())
def test_texts_are_strings_without_surrogates(text: str) -> None:
    assert isinstance(text, str)
    assert not any(is_surrogate(char) for char in text)


@pytest.mark.parametrize(
    "feature",
    [
        lambda text: "\n" in text or "\r" in text,
        lambda text: text[:1] in WHITESPACE_CHARS and text.strip() != "",
        has_zwj_emoji_sequence,
        lambda text: unicodedata.normalize("NFKC", text) != text,
        lambda text: text != "" and set(text) <= WHITESPACE_CHARS,
    ],
    ids=["newline", "edge-whitespace", "zwj-sequence", "normalization", "whitespace-only"],
)
def test_texts_mix_reaches_every_kind(feature: Any) -> None:
    assert feature(find(texts(), feature, settings=REACH))


def test_texts_shrink_to_one_character() -> None:
    assert find(texts(), lambda text: True, settings=SHRINK) == "é"
    assert find(texts(), lambda text: " " in text.strip(), settings=SHRINK).count(" ") == 1


@FAST
@given(batches())
def test_batches_hold_one_to_sixteen_distinct_texts(batch: list[str]) -> None:
    assert 1 <= len(batch) <= 16
    assert len(set(batch)) == len(batch)
    assert all(isinstance(text, str) for text in batch)


@FAST
@given(batches(min_size=3, max_size=5, elements=st.sampled_from("abcdef")))
def test_batches_respect_size_bounds_and_elements(batch: list[str]) -> None:
    assert 3 <= len(batch) <= 5
    assert len(set(batch)) == len(batch)
    assert set(batch) <= set("abcdef")


def test_importing_strategies_loads_neither_torch_nor_transformers() -> None:
    code = "import sys, parity.strategies; print('torch' in sys.modules, 'transformers' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["False", "False"]
