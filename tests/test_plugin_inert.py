"""The plugin is inert where unused, and parity tests get parity's profile, corpus and replay.

Every project here runs in a subprocess (runpytest_subprocess): the environment, hypothesis'
profile registry and sys.modules are the project's own, not this test process's."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from parity.search.regressions import model_identity

EXAMPLE = Path(__file__).parent.parent / "examples" / "test_embedding_parity.py"
HEAVY = ("numpy", "torch", "transformers", "sentence_transformers", "tokenizers", "hypothesis")

RECORDER = f"""
import json, os, sys

def test_records_what_it_sees():
    seen = {{"env": dict(os.environ), "modules": [m for m in {HEAVY!r} if m in sys.modules]}}
    with open("seen.json", "w") as out:
        json.dump(seen, out)
"""

OTHER_TEST = """
from datetime import timedelta
from hypothesis import given, settings, strategies as st

@given(st.integers())
def test_other_tests_keep_the_projects_profile(n):
    assert settings.default.max_examples == {max_examples}
    assert settings.default.deadline == {deadline}
"""

PARITY_TEST = """
import time
from hypothesis import given, settings, strategies as st

CALLS = []

@given(st.integers())
def test_parity_test_gets_paritys_profile(parity_adapters, n):
    CALLS.append(n)
    if len(CALLS) == 1:
        time.sleep(0.3)  # past hypothesis' 200 ms default deadline, as a first embed is
    assert (settings.default.max_examples, settings.default.deadline) == ({max_examples}, None)
"""

DEFAULT_DEADLINE = "timedelta(milliseconds=200)"


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)


def _clean_env(monkeypatch: pytest.MonkeyPatch, profile: str | None = None) -> None:
    """No offline flags and HYPOTHESIS_PROFILE as given, so the plugin would have to set them."""
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HYPOTHESIS_PROFILE", "CI"):
        monkeypatch.delenv(name, raising=False)
    if profile is not None:
        monkeypatch.setenv("HYPOTHESIS_PROFILE", profile)


def _corpus(pytester: pytest.Pytester, *records: dict[str, object]) -> Path:
    path = pytester.path / "fixtures" / "regressions.jsonl"
    path.parent.mkdir(exist_ok=True)
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


@pytest.mark.parametrize("profile", [None, "ci"])
def test_unused_plugin_changes_no_environment_module_or_outcome(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, profile: str | None
) -> None:
    _clean_env(monkeypatch, profile)
    pytester.makepyfile(test_recorder=RECORDER)
    _corpus(pytester, {"text": " x", "adapters": ["a", "b"]})
    seen = {}
    for plugin in ("parity", "no:parity"):
        result = _run(pytester, "-p", plugin)
        result.assert_outcomes(passed=1)  # no parity-regressions item: parity is unused
        seen[plugin] = json.loads((pytester.path / "seen.json").read_text())
    assert seen["parity"]["modules"] == seen["no:parity"]["modules"] == []
    assert seen["parity"]["env"] == seen["no:parity"]["env"]
    assert "HF_HUB_OFFLINE" not in seen["parity"]["env"]


USES_PARITY_THEN_READS_ENV = """
import os

def test_uses_parity(parity_adapters):
    assert parity_adapters

def test_reads_environment_later():
    added = sorted({"HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"} & set(os.environ))
    assert added == [], f"parity left {added} in the environment"
"""


@pytest.mark.slow  # a pytester subprocess that loads the real frameworks
def test_a_parity_fixture_adds_no_environment_variable_for_later_tests(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, bpe_model: Path
) -> None:
    _clean_env(monkeypatch)
    pytester.makepyfile(test_env=USES_PARITY_THEN_READS_ENV)
    result = _run(pytester, "--parity-model", str(bpe_model))
    result.assert_outcomes(passed=2)


NO_NETWORK = """
import socket, sys
from parity.adapters import parse_specs

def refuse(*args, **kwargs):
    raise AssertionError(f"network access: {args[:2]}")

socket.getaddrinfo = refuse
socket.socket.connect = refuse
for spec in parse_specs(sys.argv[2:]):
    adapter = spec.build(sys.argv[1])
    adapter.load()
    print(spec.label, adapter.embed(["a b"]).shape)
"""


def test_adapters_load_a_local_model_without_offline_flags_or_network(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, bpe_model: Path
) -> None:
    _clean_env(monkeypatch)
    monkeypatch.setenv("HF_HOME", str(pytester.path / "empty-hf-home"))
    script = pytester.makepyfile(no_network=NO_NETWORK)
    specs = ["sentence-transformers", "custom", "langchain", "bcembedding:pooling=mean"]
    result = pytester.run(sys.executable, str(script), str(bpe_model), *specs)
    assert result.ret == 0, result.stderr.str()
    assert [line.split(" (")[0] for line in result.outlines if "(" in line] == specs


@pytest.mark.parametrize("profile", [None, "ci"])
def test_unused_plugin_leaves_hypothesis_profile_alone(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, profile: str | None
) -> None:
    _clean_env(monkeypatch, profile)
    pytester.makepyfile(test_other=OTHER_TEST.format(max_examples=100, deadline=DEFAULT_DEADLINE))
    for plugin in ("parity", "no:parity"):
        _run(pytester, "-p", plugin).assert_outcomes(passed=1)


@pytest.mark.slow  # a pytester subprocess that loads the real frameworks
def test_a_project_profile_named_ci_is_kept(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, bpe_model: Path
) -> None:
    _clean_env(monkeypatch, "ci")
    pytester.makeconftest(
        """
import os
from hypothesis import settings
settings.register_profile("ci", max_examples=7)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
"""
    )
    pytester.makepyfile(
        test_other=OTHER_TEST.format(max_examples=7, deadline=DEFAULT_DEADLINE)
        + "\ndef test_ci_is_still_the_projects():\n"
        + "    assert settings.get_profile('ci').max_examples == 7\n",
        test_uses_parity=PARITY_TEST.format(max_examples=25),
    )
    result = _run(pytester, "--parity-model", str(bpe_model))
    result.assert_outcomes(passed=3)


@pytest.mark.slow  # a pytester subprocess that loads the real frameworks
def test_a_project_profile_in_hypothesis_profile_is_left_to_hypothesis(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, bpe_model: Path
) -> None:
    _clean_env(monkeypatch, "myprofile")
    pytester.makeconftest(
        """
import os
from hypothesis import settings
settings.register_profile("myprofile", max_examples=3)
settings.load_profile(os.environ["HYPOTHESIS_PROFILE"])
"""
    )
    pytester.makepyfile(
        test_other=OTHER_TEST.format(max_examples=3, deadline=DEFAULT_DEADLINE),
        test_uses_parity=PARITY_TEST.format(max_examples=100),  # parity's default: dev
    )
    result = _run(pytester, "--parity-model", str(bpe_model))
    result.assert_outcomes(passed=2)


@pytest.mark.slow  # a pytester subprocess that loads the real frameworks
@pytest.mark.parametrize(
    ("args", "env", "max_examples"),
    [(("--parity-profile", "ci"), None, 25), ((), None, 100), ((), "deep", 3000)],
    ids=["option-ci", "default-dev", "env-deep"],
)
def test_parity_tests_alone_get_paritys_profile_without_deadline(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    bpe_model: Path,
    args: tuple[str, ...],
    env: str | None,
    max_examples: int,
) -> None:
    _clean_env(monkeypatch, env)
    pytester.makepyfile(
        test_other=OTHER_TEST.format(max_examples=100, deadline=DEFAULT_DEADLINE),
        test_uses_parity=PARITY_TEST.format(max_examples=max_examples)
        + f"\ndef test_all_examples_ran():\n    assert len(CALLS) == {max_examples}\n",
    )
    result = _run(pytester, "--parity-model", str(bpe_model), *args)
    result.assert_outcomes(passed=3)


@pytest.mark.slow  # a pytester subprocess that loads the real frameworks
def test_a_caught_failure_is_not_recorded_and_an_uncaught_one_is_with_its_model(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, bpe_model: Path
) -> None:
    _clean_env(monkeypatch)
    pytester.makepyfile(
        test_user="""
import pytest

def test_caught(assert_parity):
    with pytest.raises(AssertionError):
        assert_parity([" hello"])

def test_unrelated():
    assert 1 == 2

def test_uncaught(assert_parity):
    assert_parity([" world"])
"""
    )
    args = ["--parity-model", str(bpe_model), "--parity-adapter", "sentence-transformers"]
    result = _run(pytester, *args, "--parity-adapter", "custom:strip=true")
    result.assert_outcomes(passed=1, failed=2)
    corpus = pytester.path / "fixtures" / "regressions.jsonl"
    records = [json.loads(line) for line in corpus.read_text().splitlines()]
    assert [(r["text"], r["model"]) for r in records] == [(" world", model_identity(bpe_model))]


@pytest.mark.slow  # a pytester subprocess that loads the real frameworks
def test_replay_is_its_own_item_with_the_entries_of_the_models_under_test(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, bpe_model: Path
) -> None:
    _clean_env(monkeypatch)
    _corpus(
        pytester,
        {"text": "one\ntwo", "adapters": ["a", "b"], "model": model_identity(bpe_model)},
        {"text": "three\nfour", "adapters": ["a", "b"], "model": "bundled:all-MiniLM-L6-v2"},
    )
    pytester.makepyfile(test_plain="def test_plain(assert_parity):\n    assert_parity(['x'])\n")
    args = ["--parity-model", str(bpe_model), "--parity-adapter", "sentence-transformers"]
    result = _run(pytester, *args, "--parity-adapter", "langchain", "-v")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "fixtures/regressions.jsonl::parity-regressions FAILED*",
            "test_plain.py::test_plain PASSED*",
            "*sentence-transformers vs langchain: 1 of 1 texts differ beyond tolerance*",
            "*known regression (replayed first from regressions.jsonl)*",
        ]
    )


@pytest.mark.slow  # a pytester subprocess that loads the real frameworks
def test_replay_skips_a_corpus_recorded_on_other_models(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, bpe_model: Path
) -> None:
    _clean_env(monkeypatch)
    _corpus(pytester, {"text": "one\ntwo", "adapters": ["a", "b"], "model": "elsewhere@0123"})
    pytester.makepyfile(test_plain="def test_plain(assert_parity):\n    assert_parity(['x'])\n")
    args = ["--parity-model", str(bpe_model), "--parity-adapter", "sentence-transformers"]
    result = _run(pytester, *args, "--parity-adapter", "langchain", "-rs")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines([f"*records no regression for {model_identity(bpe_model)}*"])


@pytest.mark.slow
def test_the_example_passes_its_first_run_on_the_bundled_model(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    _clean_env(monkeypatch)
    pytester.copy_example(str(EXAMPLE))
    pytester.makepyfile(test_other=OTHER_TEST.format(max_examples=100, deadline=DEFAULT_DEADLINE))
    result = _run(pytester, "--parity-profile", "ci")
    result.assert_outcomes(passed=5)  # the example's four, and the project's own, unchanged
    assert not (pytester.path / "fixtures" / "regressions.jsonl").exists()


def test_a_model_reference_survives_a_move_and_names_the_bundled_model(
    bpe_model: Path, tmp_path: Path
) -> None:
    import shutil

    from parity.modelinfo import bundled_model_path

    moved = shutil.copytree(bpe_model, tmp_path / "elsewhere" / bpe_model.name)
    assert model_identity(moved) == model_identity(bpe_model)
    assert model_identity(bpe_model).startswith(f"{bpe_model.name}@")
    (moved / "tokenizer.json").write_text("{}")
    assert model_identity(moved) != model_identity(bpe_model)
    assert model_identity(bundled_model_path()) == "bundled:all-MiniLM-L6-v2"


def test_replay_takes_the_models_own_entries_and_those_recorded_without_a_model(
    tmp_path: Path,
) -> None:
    from parity.search.regressions import append_regression, regression_texts

    corpus = tmp_path / "regressions.jsonl"
    corpus.write_text(json.dumps({"text": "legacy", "adapters": ["a", "b"]}) + "\n")
    assert append_regression(" ", ["a", "b"], {"euclidean": 0.8}, corpus, model="bpe@1")
    assert append_regression(" ", ["a", "b"], {"euclidean": 0.8}, corpus, model="wp@2")
    assert not append_regression(" ", ["b", "a"], {"euclidean": 0.8}, corpus, model="wp@2")
    assert regression_texts(corpus, model="bpe@1") == ["legacy", " "]
    assert regression_texts(corpus, model="bundled:all-MiniLM-L6-v2") == ["legacy"]
    assert [json.loads(line).get("model") for line in corpus.read_text().splitlines()] == [
        None,
        "bpe@1",
        "wp@2",
    ]
