"""Hypothesis strategies for texts that tend to break embedding parity.

Whitespace at the edges, newline variants, mixed scripts and emoji, Unicode normalization
forms and lengths near the tokenizer limit are where frameworks disagree. Each factory takes
keyword-only options, as hypothesis' own strategies do, and none of them imports torch or
transformers: `near_limit_texts` is handed a tokenizer by its caller.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Collection, Mapping
from typing import Any, Literal

from hypothesis import reject
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

__all__ = [
    "NORMALIZATION_FORMS",
    "WHITESPACE_CHARS",
    "NormalizationForm",
    "TokenizerLike",
    "batches",
    "edge_whitespace",
    "near_limit_texts",
    "newline_texts",
    "normalization_variants",
    "plain_texts",
    "texts",
    "unicode_texts",
    "whitespace",
]

# " " first: sampled_from shrinks towards its first element.
WHITESPACE_ORDER: tuple[str, ...] = (
    " ",
    *(chr(code) for code in range(0x09, 0x0E)),  # \t \n \v \f \r
    *(chr(code) for code in range(0x1C, 0x20)),  # file/group/record/unit separators
    "\u0085",  # next line
    "\u00a0",  # no-break space
    "\u1680",  # ogham space mark
    *(chr(code) for code in range(0x2000, 0x200B)),  # en quad .. hair space
    "\u2028",  # line separator
    "\u2029",  # paragraph separator
    "\u202f",  # narrow no-break space
    "\u205f",  # medium mathematical space
    "\u3000",  # ideographic space
    "\u200b",  # zero-width space
    "\u200c",  # zero-width non-joiner
    "\u200d",  # zero-width joiner
    "\u2060",  # word joiner
    "\ufeff",  # byte order mark
)
WHITESPACE_CHARS: frozenset[str] = frozenset(WHITESPACE_ORDER)
"""Unicode White_Space, the U+001C-U+001F separators `str.isspace` accepts, zero-widths and BOM."""

NormalizationForm = Literal["NFC", "NFD", "NFKC", "NFKD"]
NORMALIZATION_FORMS: tuple[NormalizationForm, ...] = ("NFC", "NFD", "NFKC", "NFKD")

_EDGES = ("start", "end", "both")

WORDS: tuple[str, ...] = tuple(
    (
        "the a cat dog sat on mat and ran to house river city train ticket tea coffee rain sun "
        "search index query vector model token text line small large quick slow red green blue "
        "read write open close good morning night music price order is was with for from not"
    ).split()
)

INDENTS = ("", "  ", "    ", "\t", " \t")
LINE_BREAKS = ("\n", "\r\n", "\r", "\n\n", "\r\n\r\n", "\n \n")

# Inclusive code point ranges with every code point assigned, one per script.
SCRIPT_RANGES: tuple[tuple[int, int], ...] = (
    (0x61, 0x7A),  # Latin a-z
    (0xC0, 0xFF),  # Latin-1 letters (and x, /)
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0x3041, 0x3096),  # Hiragana
    (0x0410, 0x044F),  # Cyrillic А-я
    (0x0621, 0x064A),  # Arabic letters (right-to-left)
    (0x05D0, 0x05EA),  # Hebrew letters (right-to-left)
    (0x0905, 0x0939),  # Devanagari letters
)
COMBINING_MARKS = (0x0300, 0x036F)
EMOJI = ("😀", "👍", "🎉", "❤️", "🔥", "🚀", "🇯🇵", "☕")
TONE_BASES = ("👋", "👍", "👩", "👨", "🧑", "🙌")
SKIN_TONES = ("\U0001f3fb", "\U0001f3fc", "\U0001f3fd", "\U0001f3fe", "\U0001f3ff")
ZWJ = "\u200d"
ZWJ_SEQUENCES = (
    "👨‍👩‍👧‍👦",  # family: man, woman, girl, boy
    "👩‍👩‍👦",  # family: woman, woman, boy
    "👩‍💻",  # woman technologist
    "🧑‍🚀",  # astronaut
    "👨‍🔬",  # man scientist
    "🏳️‍🌈",  # rainbow flag
    "❤️‍🔥",  # heart on fire
)
PROFESSION_OBJECTS = ("💻", "🔬", "🚀", "🍳", "🎓", "⚕️")

# Each differs between at least two of NFC, NFD, NFKC and NFKD.
NORMALIZATION_SENSITIVE = (
    "é",  # precomposed e + acute: NFD splits it
    "e\u0301",  # decomposed e + acute: NFC joins it
    "Å",  # precomposed A with ring
    "\u212b",  # ANGSTROM SIGN, which every form maps to Å
    "ﬁ",  # fi ligature: NFKC and NFKD split it
    "①",  # circled digit one
    "Ｆｕｌｌ",  # full-width letters
    "ｶﾀｶﾅ",  # half-width katakana
    "x²",  # superscript two
    "가",  # Hangul syllable: NFD gives conjoining jamo
    "ñ",
    "½",
)


def whitespace(*, min_size: int = 1, max_size: int = 8) -> st.SearchStrategy[str]:
    """Runs of `min_size` to `max_size` characters, each one of WHITESPACE_CHARS.

    Shrinks towards `min_size` plain spaces (a single " " by default).
    """
    # lists of sampled_from, not text(): text() shrinks characters by code point, not list order.
    chars = st.lists(st.sampled_from(WHITESPACE_ORDER), min_size=min_size, max_size=max_size)
    return chars.map("".join)


def plain_texts() -> st.SearchStrategy[str]:
    """Short English sentences: one to twelve lowercase words, capitalized, ending in . ? or !.

    Shrinks towards "The." (one word, the first of the word list, and a full stop).
    """
    words = st.lists(st.sampled_from(WORDS), min_size=1, max_size=12)
    endings = st.sampled_from((".", "?", "!"))
    return st.builds(_sentence, words, endings)


def _sentence(words: list[str], ending: str) -> str:
    text = " ".join(words)
    return text[0].upper() + text[1:] + ending


def edge_whitespace(
    texts: st.SearchStrategy[str] | None = None,
    *,
    where: Collection[str] = _EDGES,
) -> st.SearchStrategy[str]:
    """Texts from `texts` (default `plain_texts()`) with a `whitespace()` run added at an edge.

    `where` says which edges may be padded: any of "start", "end" and "both". Shrinks towards
    a short base text with one " " at the first edge in `where`.
    """
    edges = tuple(where)
    if not edges or any(edge not in _EDGES for edge in edges):
        raise InvalidArgument(f"where={where!r}: expected a non-empty choice of {_EDGES}")
    base = plain_texts() if texts is None else texts
    return st.builds(_pad, base, st.sampled_from(edges), whitespace(), whitespace())


def _pad(text: str, edge: str, leading: str, trailing: str) -> str:
    if edge == "start":
        return leading + text
    if edge == "end":
        return text + trailing
    return leading + text + trailing


def newline_texts() -> st.SearchStrategy[str]:
    """Two to six lines joined by "\\n", "\\r\\n", "\\r" or blank lines ("\\n\\n", "\\n \\n" ...).

    The first line is a sentence, maybe indented with spaces or tabs; later ones are indented
    sentences or empty. There are always two lines, so always a "\\n" or "\\r". Shrinks
    towards "The.\\n" (a sentence and one newline).
    """
    first = st.builds(str.__add__, st.sampled_from(INDENTS), plain_texts())
    # Blank lines first: with the other order the shrinker stops at a random short sentence.
    line = st.one_of(st.just(""), first)
    rest = st.lists(st.tuples(st.sampled_from(LINE_BREAKS), line), min_size=1, max_size=5)
    return st.builds(_join_lines, first, rest)


def _join_lines(first: str, rest: list[tuple[str, str]]) -> str:
    return first + "".join(line_break + line for line_break, line in rest)


def unicode_texts(*, allow_surrogates: bool = False) -> st.SearchStrategy[str]:
    """One to eight space-separated pieces, each from one of these kinds:

    words in Latin, CJK, Hiragana, Cyrillic, Arabic, Hebrew or Devanagari; a letter with
    combining marks; an emoji, alone, with a skin-tone modifier or in a ZWJ sequence (families,
    professions, flags); a run of control characters; and, only with `allow_surrogates`, a lone
    surrogate (U+D800-U+DFFF), which cannot be encoded as UTF-8. Shrinks towards "a".
    """
    scripts = [
        st.text(st.characters(min_codepoint=low, max_codepoint=high), min_size=1, max_size=6)
        for low, high in SCRIPT_RANGES
    ]
    combining = st.builds(
        str.__add__,
        st.sampled_from(("a", "e", "o", "и", "ש")),
        st.text(
            st.characters(min_codepoint=COMBINING_MARKS[0], max_codepoint=COMBINING_MARKS[1]),
            min_size=1,
            max_size=3,
        ),
    )
    toned = st.builds(str.__add__, st.sampled_from(TONE_BASES), st.sampled_from(SKIN_TONES))
    profession = st.builds(
        lambda person, tone, thing: person + tone + ZWJ + thing,
        st.sampled_from(("👩", "👨", "🧑")),
        st.sampled_from(("", *SKIN_TONES)),
        st.sampled_from(PROFESSION_OBJECTS),
    )
    controls = st.text(st.characters(categories=["Cc"]), min_size=1, max_size=3)
    kinds = [
        *scripts,
        combining,
        st.sampled_from(EMOJI),
        toned,
        st.sampled_from(ZWJ_SEQUENCES),
        profession,
        controls,
    ]
    if allow_surrogates:
        kinds.append(st.integers(0xD800, 0xDFFF).map(chr))
    pieces = st.lists(st.one_of(kinds), min_size=1, max_size=8)
    return pieces.map(" ".join)


def normalization_variants(
    texts: st.SearchStrategy[str] | None = None,
) -> st.SearchStrategy[dict[str, str]]:
    """{"NFC": ..., "NFD": ..., "NFKC": ..., "NFKD": ...}: one drawn text in all four forms.

    Texts come from `texts`, by default words mixed with characters whose forms differ ("é",
    "ﬁ", "Å", "①", full-width letters, Hangul); draws whose four forms are all equal are
    filtered out. Shrinks towards a one-character text such as "é".
    """
    if texts is None:
        piece = st.one_of(st.sampled_from(NORMALIZATION_SENSITIVE), st.sampled_from(WORDS))
        texts = st.builds(
            lambda first, rest: " ".join([first, *rest]),
            st.sampled_from(NORMALIZATION_SENSITIVE),
            st.lists(piece, max_size=5),
        )
    return texts.map(_all_forms).filter(lambda forms: len(set(forms.values())) > 1)


def _all_forms(text: str) -> dict[str, str]:
    return {form: unicodedata.normalize(form, text) for form in NORMALIZATION_FORMS}


TokenizerLike = Callable[[str], Mapping[str, Any]]
"""Anything called as `tokenizer(text)["input_ids"]`, e.g. a transformers tokenizer."""


def near_limit_texts(
    tokenizer: TokenizerLike, max_length: int, *, window: int = 3
) -> st.SearchStrategy[str]:
    """Texts of max_length - window to max_length + window tokens, special tokens included.

    Tokens are counted as len(tokenizer(text)["input_ids"]), without truncation. A target
    count is drawn in that range and words from a small vocabulary are repeated in a drawn
    order until the count reaches it, the last step adjusted by swapping the last word or
    attaching commas; no filtering. Shrinks towards the shortest text in the window, made of
    the word "the" repeated.
    """
    if max_length < 1:
        raise InvalidArgument(f"max_length={max_length!r}: expected a positive token count")
    if window < 0:
        raise InvalidArgument(f"window={window!r}: expected zero or more tokens")
    low, high = max(max_length - window, 0), max_length + window
    pattern = st.lists(st.sampled_from(WORDS), min_size=1, max_size=8)
    return st.builds(
        lambda target, words: _fit_token_count(tokenizer, words, target, low, high),
        st.integers(low, high),
        pattern,
    )


def _fit_token_count(
    tokenizer: TokenizerLike, pattern: list[str], target: int, low: int, high: int
) -> str:
    counts: dict[str, int] = {}

    def count(text: str) -> int:
        if text not in counts:
            counts[text] = len(tokenizer(text)["input_ids"])
        return counts[text]

    def words(n: int) -> list[str]:
        return [pattern[i % len(pattern)] for i in range(n)]

    if count("") > high:
        raise InvalidArgument(
            f"the empty text already has {count('')} tokens, more than max_length + window = {high}"
        )
    if count("") >= target:
        return ""
    # Find n with count(n - 1 words) < target <= count(n words); binary search keeps that
    # invariant without assuming counts grow monotonically with the number of words.
    below, above = 0, max(target, 1)
    while count(" ".join(words(above))) < target:
        if above > 64 * high:
            reject()  # the tokenizer hardly counts these words; nothing to build from
        below, above = above, above * 2
    while above - below > 1:
        middle = (below + above) // 2
        if count(" ".join(words(middle))) < target:
            below = middle
        else:
            above = middle
    candidate = " ".join(words(above))
    if count(candidate) <= high:
        return candidate
    # The last word overshot the window: try another last word, then commas on the words
    # before it, which most tokenizers count as one token each.
    prefix = words(above - 1)
    for last in sorted(WORDS, key=lambda word: count(word)):
        candidate = " ".join([*prefix, last])
        if low <= count(candidate) <= high:
            return candidate
    for commas in range(1, len(prefix) + 1):
        tail = [word + "," for word in prefix[len(prefix) - commas :]]
        candidate = " ".join(prefix[: len(prefix) - commas] + tail)
        if low <= count(candidate) <= high:
            return candidate
        if count(candidate) > high:
            break
    reject()  # this tokenizer cannot reach the window from this word pattern


def texts() -> st.SearchStrategy[str]:
    """A weighted mix of every text strategy here, plain sentences most often.

    Weights: plain 3, edge whitespace 2, newlines 2, unicode 2, one normalization form 1,
    whitespace only 1. Shrinks towards the branch with the shortest draw rather than the first,
    in practice to "é" (a normalization form).
    """
    one_form = st.builds(
        lambda forms, form: forms[form],
        normalization_variants(),
        st.sampled_from(NORMALIZATION_FORMS),
    )
    weighted: list[tuple[st.SearchStrategy[str], int]] = [
        (plain_texts(), 3),
        (edge_whitespace(), 2),
        (newline_texts(), 2),
        (unicode_texts(), 2),
        (one_form, 1),
        (whitespace(), 1),
    ]
    # one_of picks branches uniformly, so repeating a branch weights it.
    return st.one_of([strategy for strategy, weight in weighted for _ in range(weight)])


def batches(
    *,
    min_size: int = 1,
    max_size: int = 16,
    elements: st.SearchStrategy[str] | None = None,
) -> st.SearchStrategy[list[str]]:
    """Lists of `min_size` to `max_size` distinct texts from `elements` (default `texts()`).

    Shrinks towards `min_size` texts, each shrunk as its strategy shrinks.
    """
    return st.lists(
        texts() if elements is None else elements, min_size=min_size, max_size=max_size, unique=True
    )
