"""Validation before loading: every spec, option value and text is checked before the first
model loads, and each message names the option (or file and line) and the valid form."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from parity.adapters import Adapter, AdapterSpec, parse_specs
from parity.cli import build_parser, main
from parity.errors import ParityInputError, SpecError
from parity.texts import load_texts


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The labels of every adapter whose load() was called."""
    calls: list[str] = []
    load = Adapter.load

    def recording(self: Adapter) -> None:
        calls.append(self.label)
        load(self)

    monkeypatch.setattr(Adapter, "load", recording)
    return calls


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            "custom:max_length=abc",
            "custom: max_length='abc': expected a positive whole number or auto",
        ),
        ("custom:max_length=0", "custom: max_length='0': expected a positive whole number or auto"),
        ("custom:batch_size=0", "custom: batch_size='0': expected a positive whole number"),
        ("bcembedding:batch_size=1.5", "bcembedding: batch_size='1.5': expected a positive whole"),
        ("custom:strip=2", "custom: strip='2': expected true or false (or 1/0, yes/no, on/off)"),
        (
            "sentence-transformers:normalize=maybe",
            "sentence-transformers: normalize='maybe': expected true, false or auto",
        ),
        ("custom:dtype=f16", "custom: dtype='f16' is not valid; choose from float32"),
    ],
)
def test_parse_specs_checks_every_option_value(spec: str, message: str) -> None:
    with pytest.raises(SpecError) as raised:
        parse_specs(["custom:label=first", spec])
    assert str(raised.value).startswith(message)


def test_valid_option_values_still_parse() -> None:
    (spec,) = parse_specs(["custom:max_length=auto,batch_size=8,strip=yes,normalize=auto"])
    assert spec.options == {
        "max_length": "auto",
        "batch_size": "8",
        "strip": "yes",
        "normalize": "auto",
    }


def _argv(model: Path, texts: Path, *specs: str) -> list[str]:
    argv = ["run", "--model", str(model), "--texts", str(texts), "--quiet", "--no-retrieval"]
    for spec in specs:
        argv += ["--adapter", spec]
    return argv


def test_a_bad_option_value_fails_before_any_model_loads(
    bpe_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], loads: list[str]
) -> None:
    texts = tmp_path / "texts.txt"
    texts.write_text("hello\n")
    code = main(_argv(bpe_model, texts, "custom", "custom:max_length=abc"))
    assert code == 2
    assert capsys.readouterr().err == (
        "parity: error: custom: max_length='abc': expected a positive whole number or auto\n"
    )
    assert loads == []


def test_a_lone_surrogate_in_jsonl_names_file_and_line_before_loading(
    bpe_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], loads: list[str]
) -> None:
    texts = tmp_path / "texts.jsonl"
    texts.write_text('{"text": "fine"}\n\n{"text": "bad \\ud800 here"}\n', encoding="utf-8")
    code = main(_argv(bpe_model, texts, "custom", "sentence-transformers"))
    assert code == 2
    assert capsys.readouterr().err == (
        f"parity: error: {texts} line 3: surrogate '\\ud800' at character 4 is not valid "
        "Unicode text; remove it or replace it with a real character\n"
    )
    assert loads == []


def test_load_texts_rejects_a_bare_string_with_a_surrogate(tmp_path: Path) -> None:
    texts = tmp_path / "texts.jsonl"
    texts.write_text('"ok"\n"\\udfff"\n', encoding="utf-8")
    with pytest.raises(ParityInputError, match=re.escape(f"{texts} line 2: surrogate '\\udfff'")):
        load_texts(texts)


def test_embed_rejects_a_surrogate_by_index_without_loading(bpe_model: Path) -> None:
    adapter = AdapterSpec.parse("custom").build(bpe_model)
    with pytest.raises(ParityInputError, match=re.escape("text #1: surrogate '\\ud800' at char")):
        adapter.embed(["ok", "x\ud800"])
    assert not adapter._loaded


@pytest.fixture
def umask() -> Iterator[None]:
    previous = os.umask(0o022)
    yield
    os.umask(previous)


@pytest.mark.usefixtures("umask")
def test_report_files_follow_the_umask(tmp_path: Path) -> None:
    from parity.report.summary import write_outputs

    write_outputs(tmp_path / "a", {"passed": True}, "# report\n")
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "a").iterdir()}
    assert modes == {"summary.json": 0o644, "report.md": 0o644}
    os.umask(0o077)
    write_outputs(tmp_path / "b", {"passed": True}, "# report\n")
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "b").iterdir()}
    assert modes == {"summary.json": 0o600, "report.md": 0o600}
    assert json.loads((tmp_path / "a" / "summary.json").read_text()) == {"passed": True}


def test_fuzz_profile_help_says_what_each_profile_does() -> None:
    from parity.search.profiles import DEFAULT_PROFILE, SETTINGS

    fuzz = build_parser()._subparsers._group_actions[0].choices["fuzz"]  # type: ignore[union-attr]
    help_text = " ".join(fuzz.format_help().split())
    for name, chosen in SETTINGS.items():
        seed = "fixed seed" if chosen.derandomize else "new seed each run"
        assert re.search(
            rf"\b{name}: {chosen.max_examples} batches[^;()]*, {seed}(;| \()", help_text
        )
    assert f"which must then be ci, dev or deep; else {DEFAULT_PROFILE})" in help_text
    assert "$HYPOTHESIS_PROFILE or dev" not in help_text


@pytest.mark.parametrize(
    ("texts", "message"),
    [
        (
            ["fine", "bad \ud800 text"],
            "text #1: surrogate '\\ud800' at character 4 is not valid Unicode text; "
            "remove it or replace it with a real character",
        ),
        (["fine", None], "text #1: expected a string, got null"),
    ],
)
def test_create_baseline_validates_texts_before_any_model_loads(
    texts: list[object], message: str, bpe_model: Path, tmp_path: Path, loads: list[str]
) -> None:
    from parity.baseline import create_baseline

    out = tmp_path / "base"
    with pytest.raises(ParityInputError) as caught:
        create_baseline(["custom"], texts, out, model=bpe_model)  # type: ignore[arg-type]
    assert str(caught.value) == message
    assert loads == []
    assert not out.exists() and not out.with_name("base.lock").exists()
