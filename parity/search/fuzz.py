"""Batch-first property search: each hypothesis example is a batch of texts, embedded at once.

One call per adapter per batch; a diverging text is then shrunk in batches too (parity.search.shrink)."""

from __future__ import annotations

import random
import string
import unicodedata
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hypothesis import strategies as st

from parity.adapters import Adapter
from parity.compare import MinimalFailing, PairResult, compare_pair
from parity.metrics import Tolerance
from parity.search.shrink import shrink_text, simplicity

if TYPE_CHECKING:
    from parity.runner import RunResult
from parity.search.strategies import (
    COMBINING_MARKS,
    EMOJI,
    INDENTS,
    LINE_BREAKS,
    NORMALIZATION_FORMS,
    NORMALIZATION_SENSITIVE,
    PROFESSION_OBJECTS,
    SCRIPT_RANGES,
    SKIN_TONES,
    TONE_BASES,
    WHITESPACE_ORDER,
    WORDS,
    ZWJ,
    ZWJ_SEQUENCES,
)

BATCH_SIZE = 256
"""Texts per hypothesis example: large enough that one model call per adapter amortizes."""

LIMIT_MARGIN = 8
"""Words past a token limit in the texts of limit_probe_texts()."""

KINDS = ("raw", "whitespace", "edge", "newline", "unicode", "normalization", "plain")
"""What the fast generator can make; each batch mixes a drawn subset of them (swarm testing)."""


@dataclass
class FuzzResult:
    """What a search found for one pair; truthy when nothing diverged within the budget.

    examples: hypothesis examples (batches); texts: texts embedded per adapter, shrinking
    included; shrink_calls: shrink rounds, one embed call per adapter each.
    """

    a: str
    b: str
    examples: int
    minimal_failing: MinimalFailing | None = None
    found: list[str] = field(default_factory=list)
    seen: list[str] = field(default_factory=list)
    texts: int = 0
    shrink_calls: int = 0

    def __bool__(self) -> bool:
        return self.minimal_failing is None


def search_strategy(batch_size: int = BATCH_SIZE) -> st.SearchStrategy[list[str]]:
    """Batches of up to `batch_size` distinct short texts, cheap to draw.

    Hypothesis draws a seed and a non-empty subset of KINDS; expand_batch() turns them into
    texts with the catalogues of parity.search.strategies (whitespace code points, edge whitespace,
    newlines, scripts, emoji, normalization forms, plain words, raw short strings). Hypothesis
    would shrink a draw towards seed 0 and the first kind, which is no simpler a batch, so
    fuzz_pair() skips that phase and shrinks the failing text with parity.search.shrink instead.
    """
    kinds = st.sets(st.sampled_from(KINDS), min_size=1)
    return st.builds(expand_batch, st.integers(0, 2**64 - 1), kinds, st.just(batch_size))


def expand_batch(seed: int, kinds: Collection[str], size: int = BATCH_SIZE) -> list[str]:
    """Up to `size` distinct texts of the given KINDS, a deterministic function of `seed`.

    raw: 0-6 characters from ASCII, whitespace, the scripts of unicode_texts(), combining
    marks, controls and emoji; whitespace: a run of 1-4 WHITESPACE_CHARS; edge: words (or
    unicode pieces) with a whitespace run at the start, the end or both; newline: 2-6 lines,
    some blank or indented, joined by any of "\\n", "\\r\\n", "\\r" and blank lines; unicode:
    script runs, combining marks, emoji with skin tones or ZWJ, control runs; normalization:
    form-sensitive pieces and words in one of the four forms; plain: words, maybe capitalized
    with . ? or !. Counts of words, pieces and lines are mostly 1 or 2, so most texts are a
    few tokens long.
    """
    rng = random.Random(seed)
    makers = [_MAKERS[kind] for kind in KINDS if kind in kinds]
    texts: dict[str, None] = {}
    for _ in range(4 * size):
        if len(texts) >= size:
            break
        texts[rng.choice(makers)(rng)] = None
    return list(texts)


def _count(rng: random.Random, high: int, more: float = 0.4) -> int:
    """1 to `high`, each step up with probability `more`: mostly 1 or 2, rarely `high`."""
    count = 1
    while count < high and rng.random() < more:
        count += 1
    return count


_ASCII = string.ascii_letters + string.digits + string.punctuation
_CONTROLS = "".join(chr(code) for code in (*range(0x20), *range(0x7F, 0xA0)))


def _raw_char(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.45:
        return rng.choice(_ASCII)
    if roll < 0.6:
        return rng.choice(WHITESPACE_ORDER)
    if roll < 0.8:
        low, high = rng.choice(SCRIPT_RANGES)
        return chr(rng.randint(low, high))
    if roll < 0.87:
        return chr(rng.randint(*COMBINING_MARKS))
    if roll < 0.93:
        return rng.choice(_CONTROLS)
    return rng.choice((*EMOJI, *SKIN_TONES, ZWJ))


def _raw(rng: random.Random) -> str:
    return "".join(_raw_char(rng) for _ in range(rng.randrange(7)))


def _whitespace(rng: random.Random) -> str:
    return "".join(rng.choice(WHITESPACE_ORDER) for _ in range(_count(rng, 4)))


def _plain(rng: random.Random) -> str:
    text = " ".join(rng.choice(WORDS) for _ in range(_count(rng, 12)))
    return text if rng.random() < 0.5 else text.capitalize() + rng.choice(".?!")


def _edge(rng: random.Random) -> str:
    base = _plain(rng) if rng.random() < 0.7 else _unicode(rng)
    edge = rng.randrange(3)
    return (_whitespace(rng) if edge != 1 else "") + base + (_whitespace(rng) if edge else "")


def _newline(rng: random.Random) -> str:
    lines = [rng.choice(INDENTS) + _plain(rng) if rng.random() < 0.8 else ""]
    for _ in range(_count(rng, 5)):
        line = rng.choice(INDENTS) + _plain(rng) if rng.random() < 0.6 else ""
        lines.append(rng.choice(LINE_BREAKS) + line)
    return "".join(lines)


def _unicode_piece(rng: random.Random) -> str:
    roll = rng.randrange(6)
    if roll == 0:
        low, high = rng.choice(SCRIPT_RANGES)
        return "".join(chr(rng.randint(low, high)) for _ in range(_count(rng, 6)))
    if roll == 1:
        marks = (chr(rng.randint(*COMBINING_MARKS)) for _ in range(_count(rng, 3)))
        return rng.choice("aeoиש") + "".join(marks)
    if roll == 2:
        return rng.choice(EMOJI)
    if roll == 3:
        return rng.choice(TONE_BASES) + rng.choice(SKIN_TONES)
    if roll == 4:
        person = rng.choice("👩👨🧑") + rng.choice(("", *SKIN_TONES))
        return rng.choice((*ZWJ_SEQUENCES, person + ZWJ + rng.choice(PROFESSION_OBJECTS)))
    return "".join(rng.choice(_CONTROLS) for _ in range(_count(rng, 3)))


def _unicode(rng: random.Random) -> str:
    return " ".join(_unicode_piece(rng) for _ in range(_count(rng, 8)))


def _normalization(rng: random.Random) -> str:
    pieces = [rng.choice(NORMALIZATION_SENSITIVE)]
    for _ in range(_count(rng, 6) - 1):
        pieces.append(rng.choice(NORMALIZATION_SENSITIVE + WORDS))
    text = " ".join(pieces)
    form = unicodedata.normalize(rng.choice(NORMALIZATION_FORMS), text)
    # "x²" in NFKC is "x2", which no normalization changes: keep the original then.
    sensitive = any(unicodedata.normalize(other, form) != form for other in NORMALIZATION_FORMS)
    return form if sensitive else text


_MAKERS: dict[str, Callable[[random.Random], str]] = {
    "raw": _raw,
    "whitespace": _whitespace,
    "edge": _edge,
    "newline": _newline,
    "unicode": _unicode,
    "normalization": _normalization,
    "plain": _plain,
}


class _Search:
    """The state of one pair's search: texts checked, texts failing, and the call counts."""

    def __init__(self, a: Adapter, b: Adapter, tolerance: Tolerance, progress: Any) -> None:
        self.a, self.b, self.tolerance, self.progress = a, b, tolerance, progress
        self.checked: set[str] = set()
        self.seen: list[str] = []
        self.failing: list[str] = []
        self.failing_set: set[str] = set()
        self.in_batch: dict[str, MinimalFailing] = {}
        self.examples = self.texts = self.shrink_calls = 0

    def compare(self, texts: list[str]) -> PairResult:
        self.texts += len(texts)
        a, b = self.a, self.b
        return compare_pair(a.label, a.embed(texts), b.label, b.embed(texts), texts, self.tolerance)

    def diverges(self, batch: Sequence[str]) -> bool:
        if not self.failing_set.isdisjoint(batch):
            return True  # hypothesis replaying the batch that failed: not a new example
        self.examples += 1
        if self.examples % 10 == 0:
            labels = f"{self.a.label} vs {self.b.label}"
            self.progress(f"{labels}: {self.examples} batches, {len(self.checked)} texts")
        new = [text for text in dict.fromkeys(batch) if text not in self.checked]
        if not new:
            return False
        self.checked.update(new)
        self.seen.extend(new[: max(256 - len(self.seen), 0)])
        pair = self.compare(new)
        if pair:
            return False
        for index in pair.failing_indices():
            self.failing.append(new[index])
            self.in_batch[new[index]] = _record(new[index], pair, index)
        self.failing_set.update(self.failing)
        return True

    def fails(self, candidates: list[str]) -> list[bool]:
        self.shrink_calls += 1
        return [bool(flag) for flag in self.compare(candidates).failing]


def fuzz_pair(
    a: Adapter,
    b: Adapter,
    *,
    tolerance: Tolerance,
    max_examples: int,
    seed: int | None = None,
    strategy: Any = None,
    progress: Callable[[str], None] = lambda message: None,
    batch_size: int = BATCH_SIZE,
) -> FuzzResult:
    """Search batches of texts for one that diverges, then shrink it to one minimal text.

    Each hypothesis example (from `strategy`, default search_strategy(batch_size)) is one batch;
    its texts not checked before are embedded in one call per adapter. The simplest diverging
    text of the first diverging batch is shrunk with parity.search.shrink.shrink_text, each round of
    candidates again in one call per adapter.
    """
    from hypothesis import HealthCheck, Phase, find, settings
    from hypothesis.errors import NoSuchExample

    strategy = strategy if strategy is not None else search_strategy(batch_size)
    search = _Search(a, b, tolerance, progress)
    config = settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        derandomize=seed is None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.generate],
    )
    rng = random.Random(seed) if seed is not None else None
    result = FuzzResult(a.label, b.label, 0, seen=search.seen)
    try:
        find(strategy, search.diverges, settings=config, random=rng)
    except NoSuchExample:
        _probe_limits(a, b, search.compare, result, progress)
    else:
        minimal = shrink_text(min(search.failing, key=simplicity), search.fails)
        result.minimal_failing = _fails_alone(
            minimal, search.failing, search.compare, search.in_batch
        )
        result.found = search.failing
    result.examples, result.texts = search.examples, search.texts
    result.shrink_calls = search.shrink_calls
    return result


def _record(text: str, pair: PairResult, index: int) -> MinimalFailing:
    delta = pair.delta(index)
    return MinimalFailing(
        text=text,
        max_abs=delta.max_abs,
        cosine=delta.cosine,
        euclidean=delta.euclidean,
        batch_dependent=False,
    )


def _fails_alone(
    minimal: str,
    failing: list[str],
    compare: Callable[[list[str]], PairResult],
    in_batch: dict[str, MinimalFailing],
) -> MinimalFailing:
    """The record of a text that diverges embedded on its own, as a user will replay it.

    The shrunk text is checked alone; if batching made it fail (padding, batch-size effects),
    the simplest found text that fails alone is taken instead; if none does, the simplest one
    is returned with its in-batch metrics and `batch_dependent` set."""
    for text in [minimal, *sorted(failing, key=simplicity)[:16]]:
        alone = compare([text])
        if not alone:
            return _record(text, alone, 0)
    return MinimalFailing(**{**in_batch[min(failing, key=simplicity)], "batch_dependent": True})


def limit_probe_texts(limits: Collection[int]) -> list[str]:
    """Plain texts just past each token limit, shortest first: LIMIT_MARGIN more words than the
    limit (every word is at least one token), so a side that keeps more tokens than the other
    shows. The random batches stay short and cheap, so they never get there."""
    return [
        " ".join(WORDS[i % len(WORDS)] for i in range(limit + LIMIT_MARGIN))
        for limit in sorted(set(limits))
    ]


def _probe_limits(
    a: Adapter,
    b: Adapter,
    compare: Callable[[list[str]], PairResult],
    result: FuzzResult,
    progress: Callable[[str], None],
) -> None:
    """After a clean search: do texts past either side's max_length diverge (truncation)?"""
    limits = sorted(
        {n for n in (side.describe().get("max_length") for side in (a, b)) if isinstance(n, int)}
    )
    texts = limit_probe_texts([n for n in limits if n > 0])
    if not texts:
        return
    progress(f"{a.label} vs {b.label}: texts past {' and '.join(map(str, limits))} tokens")
    pair = compare(texts)
    if pair:
        return
    first = pair.failing_indices()[0]  # the shortest; long by nature, so not shrunk further
    result.minimal_failing = _record(texts[first], pair, first)
    result.found = [texts[i] for i in pair.failing_indices()]


def fuzz_run(
    specs: Sequence[Any],
    *,
    model: str | None,
    tolerance: Tolerance,
    max_examples: int,
    seed: int | None,
    regressions: Path | None,
    progress: Callable[[str], None],
) -> tuple[RunResult, dict[str, MinimalFailing | None]]:
    """Search every pair, then compare and diagnose on the texts the search saw.

    Returns a RunResult (adapters still loaded) and the minimal failing example per pair."""
    import itertools

    from parity.compare import compare_all
    from parity.modelinfo import resolve_model
    from parity.runner import RunResult, require_two, token_exercise
    from parity.search.regressions import model_identity

    require_two(specs)
    model_path = resolve_model(model)
    adapters = {s.label: s.build(model_path) for s in specs}
    for label, adapter in adapters.items():
        progress(f"{label}: loading {model_path.name}")
        adapter.load()
    minimal: dict[str, MinimalFailing | None] = {}
    texts: list[str] = []
    for x, y in itertools.combinations(adapters.values(), 2):
        progress(f"searching {x.label} vs {y.label} ({max_examples} examples at most)")
        found = fuzz_pair(
            x, y, tolerance=tolerance, max_examples=max_examples, seed=seed, progress=progress
        )
        minimal[f"{x.label}\t{y.label}"] = found.minimal_failing
        if found.minimal_failing is not None:
            texts.append(found.minimal_failing["text"])
            if regressions is not None:
                _append_regression(found, model_identity(model_path), regressions)
        texts.extend(found.found[:50] + found.seen[:100])
    texts = list(dict.fromkeys(texts))
    embeddings = {label: a.embed(texts) for label, a in adapters.items()}
    configs = {label: a.describe() for label, a in adapters.items()}
    exercised = token_exercise({label: a.tokenize(texts) for label, a in adapters.items()})
    comparison = compare_all(embeddings, texts, tolerance, configs, exercised)
    result = RunResult(
        str(model_path),
        texts,
        embeddings,
        configs,
        {s.label: s for s in specs},
        comparison,
        adapters=adapters,
    )
    return result, minimal


def _append_regression(found: FuzzResult, model: str, regressions: Path) -> None:
    """Record a pair's minimal failing text in the corpus, with the model it was found on;
    a text that only diverges inside a batch would pass when replayed on its own: skipped."""
    from parity.search.regressions import append_regression

    minimal = found.minimal_failing
    if minimal is not None and not minimal["batch_dependent"]:
        metrics = {"max_abs": minimal["max_abs"], "cosine": minimal["cosine"]}
        metrics["euclidean"] = minimal["euclidean"]
        append_regression(minimal["text"], [found.a, found.b], metrics, regressions, model=model)
