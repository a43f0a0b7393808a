from __future__ import annotations

from pathlib import Path

import pytest

from parity.adapters import REGISTRY, AdapterSpec, parse_specs
from parity.errors import SpecError


def test_spec_with_options_and_label() -> None:
    spec = AdapterSpec.parse("custom:pooling=cls,max_length=512,label=prod")
    assert (spec.name, spec.options, spec.label) == (
        "custom",
        {"pooling": "cls", "max_length": "512"},
        "prod",
    )
    adapter = spec.build("/nowhere")
    assert adapter.config["pooling"] == "cls" and adapter.config["max_length"] == 512
    assert adapter.label == "prod"


def test_default_label_spells_out_options() -> None:
    assert AdapterSpec.parse("bcembedding:pooling=mean").label == "bcembedding:pooling=mean"
    assert AdapterSpec.parse("langchain").label == "langchain"


def test_unknown_adapter_lists_choices() -> None:
    with pytest.raises(SpecError) as info:
        AdapterSpec.parse("sbert")
    # built-ins first, in registry order (later built-ins and installed plugins follow)
    assert str(info.value).startswith(
        "unknown adapter 'sbert' in spec 'sbert'; choose from "
        "sentence-transformers, custom, bcembedding, langchain"
    )


def test_unknown_option_lists_valid_keys() -> None:
    with pytest.raises(
        SpecError,
        match="adapter 'langchain' has no option 'pooling'; valid options: "
        "device, mode, normalize, label",
    ):
        AdapterSpec.parse("langchain:pooling=cls")


def test_bad_option_value_lists_choices() -> None:
    with pytest.raises(
        SpecError, match="custom: pooling='avg' is not valid; choose from auto, cls"
    ):
        AdapterSpec.parse("custom:pooling=avg").build("/nowhere")


def test_duplicate_labels_are_rejected() -> None:
    with pytest.raises(SpecError, match="two adapters are labelled 'custom'"):
        parse_specs(["custom", "custom"])
    assert len(parse_specs(["custom", "custom:label=other"])) == 2


def test_registry_has_the_real_adapters() -> None:
    from parity.adapters.registry import BUILTIN

    assert list(BUILTIN)[:4] == ["sentence-transformers", "custom", "bcembedding", "langchain"]
    assert set(BUILTIN) == {
        *("sentence-transformers", "custom", "bcembedding", "langchain"),
        *("http", "onnx", "fastembed", "llamaindex", "vectors"),
    }
    # each resolves to a real Adapter class named as it is registered
    assert all(REGISTRY[name].name == name for name in BUILTIN)


def test_a_spec_without_a_required_option_fails_at_parse_time() -> None:
    with pytest.raises(SpecError) as http:
        AdapterSpec.parse("http:model=m")
    assert str(http.value) == (
        "adapter 'http' needs url=, the full endpoint (required; "
        "e.g. http:url=http://127.0.0.1:7997/embeddings)"
    )
    with pytest.raises(SpecError, match=r"^adapter 'vectors' needs path=, the vectors file"):
        parse_specs(["custom", "vectors:label=index"])
    with pytest.raises(SpecError, match=r"adapter 'vectors' needs path="):
        AdapterSpec.parse("vectors:path= ")  # an empty value is no value
    assert AdapterSpec.parse("http:url=http://127.0.0.1:1/e").options["url"]


def test_cli_refuses_a_spec_without_a_required_option_before_any_model_loads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from parity.cli import main

    texts = tmp_path / "t.txt"
    texts.write_text("a\n")
    # --model points nowhere: a failure to load it would be a different message
    code = main(["run", "--model", str(tmp_path / "absent"), "--texts", str(texts),
                 "--adapter", "custom", "--adapter", "http"])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert "adapter 'http' needs url=" in err and "absent" not in err
