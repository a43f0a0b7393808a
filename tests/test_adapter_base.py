"""The Adapter base class validates; a function adapter (a test double) stands in for a backend."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import pytest

from parity.adapters.base import Adapter, Option, parse_bool, validate_texts
from parity.errors import (
    AdapterCrash,
    AdapterError,
    AdapterUnavailable,
    ParityError,
    ParityInputError,
    SpecError,
)


class FunctionAdapter(Adapter):
    name = "function"
    summary = "test double"
    options: ClassVar[dict[str, Option]] = {
        "scale": Option(1.0, "multiply", float),
        "flag": Option(False, "bool", parse_bool),
    }

    def __init__(self, fn: Callable[[list[str]], Any], **config: Any) -> None:
        super().__init__("no-model", **config)
        self.fn = fn
        self.loads = 0
        self.closes = 0

    def _load(self) -> None:
        self.loads += 1

    def _close(self) -> None:
        self.closes += 1

    def _embed(self, texts: list[str]) -> Any:
        return self.fn(texts)

    def _describe(self) -> dict[str, Any]:
        return {"pooling": "mean"}


def lengths(texts: list[str]) -> np.ndarray:
    return np.array([[len(t), 1.0] for t in texts], dtype=np.float64)


def test_embed_returns_float32_rows_in_order() -> None:
    out = FunctionAdapter(lengths).embed(["a", "", "abc"])
    assert out.dtype == np.float32
    assert out[:, 0].tolist() == [1.0, 0.0, 3.0]


@pytest.mark.parametrize(
    ("texts", "message"),
    [
        (["ok", None], "text #1: expected a string, got null"),
        (["ok", "fine", 3], "text #2: expected a string, got int"),
        ("single string", "expected a sequence of strings, got str"),
        ([b"bytes"], "text #0: expected a string, got bytes"),
    ],
)
def test_non_string_input_names_index_and_type(texts: Any, message: str) -> None:
    with pytest.raises(ParityInputError, match=message):
        FunctionAdapter(lengths).embed(texts)


def test_empty_string_is_a_valid_text() -> None:
    assert validate_texts([""]) == [""]


@pytest.mark.parametrize(
    ("fn", "message"),
    [
        (lambda t: np.ones((len(t) + 1, 2)), r"expected output of shape \(2, dim\), got \(3, 2\)"),
        (lambda t: np.ones(len(t)), r"expected output of shape \(2, dim\), got \(2,\)"),
        (lambda t: np.array([["x", "y"], ["z", "w"]]), "is not numeric"),
    ],
)
def test_bad_output_is_an_adapter_error(fn: Callable[[list[str]], Any], message: str) -> None:
    with pytest.raises(AdapterError, match=message):
        FunctionAdapter(fn).embed(["a", "b"])


def test_backend_exception_is_wrapped_with_label() -> None:
    def boom(texts: list[str]) -> Any:
        raise RuntimeError("CUDA out of memory")

    # a crash, not bad input: AdapterCrash is no ParityError, so the CLI exits 3 with error.log
    with pytest.raises(
        AdapterCrash, match="adapter mine crashed while embedding: RuntimeError: CUDA out of memory"
    ) as caught:
        FunctionAdapter(boom, label="mine").embed(["a"])
    assert not isinstance(caught.value, ParityError)
    assert isinstance(caught.value.__cause__, RuntimeError)


def test_context_manager_loads_once_and_frees() -> None:
    adapter = FunctionAdapter(lengths)
    with adapter as loaded:
        loaded.embed(["a"])
        loaded.embed(["b"])
    assert (adapter.loads, adapter.closes) == (1, 1)


def test_options_are_validated_and_coerced() -> None:
    adapter = FunctionAdapter(lengths, scale="2.5", flag="true")
    assert adapter.config == {"device": "cpu", "scale": 2.5, "flag": True}
    with pytest.raises(
        SpecError, match="has no option 'colour'; valid options: device, flag, scale"
    ):
        FunctionAdapter(lengths, colour="red")
    with pytest.raises(SpecError, match="flag='maybe': expected true or false"):
        FunctionAdapter(lengths, flag="maybe")


def test_describe_has_effective_settings_and_versions() -> None:
    described = FunctionAdapter(lengths).describe()
    assert described["pooling"] == "mean"
    assert described["device"] == "cpu"
    assert described["preprocessing"] == []
    assert described["versions"]["torch"]
    assert described["versions"]["python"].count(".") == 2


def test_missing_framework_names_install_step() -> None:
    class Missing(FunctionAdapter):
        requires = ("surely_not_installed_pkg",)
        install_hint = "pip install surely-not-installed"

    ok, why = Missing.available()
    assert not ok and "pip install surely-not-installed" in why
    with pytest.raises(AdapterUnavailable, match="install with `pip install surely-not-installed`"):
        Missing(lengths).embed(["a"])


def test_a_dotted_requirement_whose_parent_is_missing_is_unavailable_not_a_crash() -> None:
    # find_spec("a.b") imports "a" and raises ModuleNotFoundError when "a" is not installed
    # (the llamaindex adapter requires "llama_index.embeddings.huggingface")
    class MissingParent(FunctionAdapter):
        requires = ("surely_not_installed_pkg.embeddings.huggingface",)
        install_hint = "pip install 'parity[llamaindex]'"

    ok, why = MissingParent.available()
    assert not ok
    assert why == (
        "no module named 'surely_not_installed_pkg.embeddings.huggingface'; "
        "install with `pip install 'parity[llamaindex]'`"
    )
    with pytest.raises(AdapterUnavailable, match=r"install with `pip install 'parity\[llama"):
        MissingParent(lengths).embed(["a"])
