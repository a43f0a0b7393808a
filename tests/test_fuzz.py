"""`parity fuzz`: batch-first search finds and shrinks real divergences, in few model calls."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import Phase, find, settings

from parity.adapters import Adapter
from parity.cli import main
from parity.metrics import Tolerance
from parity.search.fuzz import KINDS, expand_batch, fuzz_pair, search_strategy
from parity.search.regressions import model_identity
from parity.search.strategies import NORMALIZATION_FORMS, WHITESPACE_CHARS


def fuzz(model: Path, tmp_path: Path, *adapters: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    out = tmp_path / "out"
    args = [
        "fuzz",
        "--model",
        str(model),
        "--profile",
        "ci",
        "--out",
        str(out),
        "--quiet",
        "--regressions",
        str(tmp_path / "regressions.jsonl"),
    ]
    for spec in adapters:
        args += ["--adapter", spec]
    code = main(args)
    return code, json.loads((out / "summary.json").read_text())


def test_strip_is_found_and_shrunk_to_an_edge_whitespace_text(
    bpe_model: Path, tmp_path: Path
) -> None:
    code, summary = fuzz(bpe_model, tmp_path, "sentence-transformers", "custom:strip=true")
    assert code == 1
    minimal = summary["pairs"][0]["minimal_failing"]
    assert len(minimal["text"]) <= 3
    assert minimal["text"] != minimal["text"].strip()
    assert minimal["euclidean"] > 5e-3
    assert summary["pairs"][0]["causes"][0]["cause"] == "strip"
    records = [json.loads(x) for x in (tmp_path / "regressions.jsonl").read_text().splitlines()]
    assert [r["text"] for r in records] == [minimal["text"]]
    assert records[0]["model"] == model_identity(bpe_model)  # found on this model only
    assert records[0]["model"].startswith(f"{bpe_model.name}@")
    code, _ = fuzz(bpe_model, tmp_path, "sentence-transformers", "custom:strip=true")
    assert len((tmp_path / "regressions.jsonl").read_text().splitlines()) == 1  # deduplicated


def test_langchain_newline_is_found(bpe_model: Path, tmp_path: Path) -> None:
    code, summary = fuzz(bpe_model, tmp_path, "sentence-transformers", "langchain")
    assert code == 1
    assert "\n" in summary["pairs"][0]["minimal_failing"]["text"]
    assert summary["pairs"][0]["causes"][0]["cause"] == "newline"


def test_matched_adapters_find_nothing_in_the_ci_budget(bpe_model: Path, tmp_path: Path) -> None:
    code, summary = fuzz(bpe_model, tmp_path, "sentence-transformers", "custom")
    assert code == 0
    assert summary["pairs"][0]["minimal_failing"] is None
    assert summary["pairs"][0]["n"] > 25
    assert summary["max_examples"] == 25
    assert not (tmp_path / "regressions.jsonl").exists()


def test_fuzz_needs_two_adapters(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fuzz", "--adapter", "custom", "--out", str(tmp_path)]) == 2
    assert "need at least two adapters" in capsys.readouterr().err


# --- the search itself, on stand-in adapters ----------------------------------------------------


class Recording(Adapter):
    """A stand-in adapter: a text's vector is (length after `transform`, 1); records its calls."""

    name = "recording"
    summary = "test double"

    def __init__(self, label: str, transform: Callable[[str], str] = lambda text: text) -> None:
        super().__init__("no-model", label=label)
        self.transform = transform
        self.calls: list[int] = []
        self.texts: list[str] = []

    def _load(self) -> None:
        pass

    def _describe(self) -> dict[str, Any]:
        return {}

    def _embed(self, texts: list[str]) -> np.ndarray:
        self.calls.append(len(texts))
        self.texts.extend(texts)
        return np.array([[len(self.transform(text)), 1.0] for text in texts])


def test_expand_batch_is_deterministic_distinct_and_sized() -> None:
    batch = expand_batch(7, KINDS, 200)
    assert batch == expand_batch(7, list(reversed(KINDS)), 200)
    assert batch != expand_batch(8, KINDS, 200)
    assert len(batch) == len(set(batch)) == 200
    assert all(len(text) <= 400 for text in batch)


@pytest.mark.parametrize(
    ("kind", "holds"),
    [
        ("whitespace", lambda text: text != "" and set(text) <= WHITESPACE_CHARS),
        ("edge", lambda text: text[0] in WHITESPACE_CHARS or text[-1] in WHITESPACE_CHARS),
        ("newline", lambda text: "\n" in text or "\r" in text),
        (
            "normalization",
            lambda text: len({unicodedata.normalize(f, text) for f in NORMALIZATION_FORMS}) > 1,
        ),
        ("plain", lambda text: text.rstrip(".?!").replace(" ", "").isalpha()),
        ("raw", lambda text: len(text) <= 6),
        ("unicode", lambda text: text != ""),
    ],
)
def test_each_kind_generates_what_it_says(kind: str, holds: Callable[[str], bool]) -> None:
    batch = expand_batch(3, [kind], 64)
    assert batch
    assert all(holds(text) for text in batch), [t for t in batch if not holds(t)][:3]
    assert not any(0xD800 <= ord(char) <= 0xDFFF for text in batch for char in text)


def test_search_strategy_draws_batches_of_the_asked_size() -> None:
    batch = find(
        search_strategy(batch_size=32),
        lambda batch: True,
        settings=settings(max_examples=5, database=None, phases=[Phase.generate]),
    )
    assert len(batch) == len(set(batch)) == 32


def test_one_call_per_adapter_per_batch_and_per_shrink_round() -> None:
    a, b = Recording("a"), Recording("b", str.strip)
    found = fuzz_pair(a, b, tolerance=Tolerance(), max_examples=25)
    assert not found
    assert found.minimal_failing is not None and found.minimal_failing["text"] == " "
    assert found.minimal_failing["euclidean"] == 1.0
    assert a.calls == b.calls
    # the diverging batch (hypothesis replays it without embedding), shrink rounds, the record
    assert len(a.calls) == 1 + found.shrink_calls + 1
    assert a.calls[0] > 100
    assert found.shrink_calls <= 3
    assert found.found and all(text != text.strip() for text in found.found)


def test_matched_adapters_check_every_batch_once() -> None:
    a, b = Recording("a"), Recording("b")
    found = fuzz_pair(a, b, tolerance=Tolerance(), max_examples=10)
    assert found and found.minimal_failing is None
    assert found.examples == 10
    assert len(a.calls) <= 10 and sum(a.calls) == found.texts > 1000
    assert len(found.seen) == 256


def test_seeds_repeat_and_differ() -> None:
    def seen(seed: int | None) -> list[str]:
        a = Recording("a")
        fuzz_pair(a, Recording("b"), tolerance=Tolerance(), max_examples=3, seed=seed)
        return a.texts

    assert seen(None) == seen(None)  # derandomized
    assert seen(1) == seen(1)
    assert seen(1) != seen(2)


class Truncating(Recording):
    """A stand-in that keeps the first `limit` words, and says so in describe()."""

    def __init__(self, label: str, limit: int) -> None:
        super().__init__(label, lambda text: " ".join(text.split(" ")[:limit]))
        self.limit = limit

    def _describe(self) -> dict[str, Any]:
        return {"max_length": self.limit}


def test_texts_past_a_token_limit_are_probed_after_a_clean_search() -> None:
    a, b = Truncating("a", 200), Truncating("b", 400)
    found = fuzz_pair(a, b, tolerance=Tolerance(), max_examples=3)
    assert found.minimal_failing is not None
    assert len(found.minimal_failing["text"].split(" ")) == 200 + 8
    text = found.minimal_failing["text"]
    kept = " ".join(text.split(" ")[:200])
    # the double's vector is (characters kept, 1): b keeps all 208 words, a only 200
    assert found.minimal_failing["max_abs"] == len(text) - len(kept) > 0
    assert a.texts[-2:] == found.found  # both probe texts (208 and 408 words) diverge
    assert found.shrink_calls == 0


def test_equal_limits_probe_clean() -> None:
    found = fuzz_pair(
        Truncating("a", 50), Truncating("b", 50), tolerance=Tolerance(), max_examples=2
    )
    assert found and found.minimal_failing is None


@pytest.mark.slow
def test_bcembedding_truncation_is_found_on_minilm(minilm: Path, tmp_path: Path) -> None:
    code, summary = fuzz(minilm, tmp_path, "sentence-transformers", "bcembedding:pooling=mean")
    assert code == 1
    pair = summary["pairs"][0]
    assert len(pair["minimal_failing"]["text"].split()) == 256 + 8
    assert pair["minimal_failing"]["euclidean"] > 5e-3
    assert pair["causes"][0]["cause"] == "truncation"


class BatchDependent(Recording):
    """A stand-in whose vectors depend on the batch they are embedded in (padding-like)."""

    def _embed(self, texts: list[str]) -> np.ndarray:
        self.calls.append(len(texts))
        widest = max(len(text) for text in texts)
        return np.array([[float(len(texts) > 1 and widest > 3), 1.0] for _ in texts])


def test_a_text_that_only_fails_inside_a_batch_is_flagged_not_passed_off() -> None:
    found = fuzz_pair(
        Recording("a", lambda t: ""), BatchDependent("b"), tolerance=Tolerance(), max_examples=3
    )
    record = found.minimal_failing
    assert record is not None
    assert record["batch_dependent"] is True
    assert record["max_abs"] > 5e-3  # the in-batch metrics that made it fail, never zeros


def test_the_diverging_batch_counts_once() -> None:
    found = fuzz_pair(
        Recording("a"), Recording("b", str.strip), tolerance=Tolerance(), max_examples=25
    )
    assert found.examples == 1
    assert found.minimal_failing is not None and found.minimal_failing["batch_dependent"] is False


@pytest.mark.parametrize("value", ["-1", "0", "many"])
def test_max_examples_must_be_a_positive_integer(tmp_path: Path, value: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "fuzz",
                "--adapter",
                "custom",
                "--adapter",
                "custom:strip=true",
                "--max-examples",
                value,
            ]
        )
    assert exit_info.value.code == 2


def test_dev_profile_searches_with_a_recorded_random_seed(bpe_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    argv = ["fuzz", "--model", str(bpe_model), "--profile", "dev", "--max-examples", "1"]
    argv += ["--adapter", "sentence-transformers", "--adapter", "custom", "--quiet"]
    argv += ["--out", str(out), "--regressions", ""]
    assert main(argv) == 0
    first = json.loads((out / "summary.json").read_text())["seed"]
    assert main(argv) == 0
    second = json.loads((out / "summary.json").read_text())["seed"]
    assert isinstance(first, int) and first != second
    argv[argv.index("dev")] = "ci"
    assert main(argv) == 0
    assert json.loads((out / "summary.json").read_text())["seed"] is None  # derandomized


@pytest.mark.parametrize("ci_env", ["true", None])
def test_profiles_keep_their_randomness_whether_or_not_hypothesis_sees_ci(
    ci_env: str | None,
) -> None:
    # Hypothesis loads a derandomized profile of its own when CI is set; dev and deep must not
    # inherit it, or nightly deep runs in CI would search the same texts every night.
    code = (
        "import parity.search.profiles as p; "
        "print([(n, p.SETTINGS[n].derandomize, p.SETTINGS[n].max_examples)"
        " for n in p.PROFILES])"
    )
    env = {key: value for key, value in os.environ.items() if key not in ("CI", "TF_BUILD")}
    env.update({"CI": ci_env} if ci_env else {})
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[('ci', True, 25), ('dev', False, 100), ('deep', False, 3000)]"
