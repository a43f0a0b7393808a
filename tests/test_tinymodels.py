from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from parity.tinymodels import build_tiny_model

# transformers 5 saves PreTrainedTokenizerFast under its new name; both keep our pipeline
TOKENIZER_CLASSES = ("PreTrainedTokenizerFast", "TokenizersBackend")


def _digest(path: Path) -> str:
    return hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()


def test_same_seed_same_files_other_seed_other_weights(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    again = build_tiny_model("bpe", tmp_path / "again", seed=0)
    other = build_tiny_model("bpe", tmp_path / "other", seed=1)
    assert _digest(again) == _digest(tiny_models["bpe"])
    assert (again / "tokenizer.json").read_text() == (
        tiny_models["bpe"] / "tokenizer.json"
    ).read_text()
    assert _digest(other) != _digest(again)


def test_tokenizers_keep_whitespace(tiny_models: dict[str, Path]) -> None:
    from transformers import AutoTokenizer

    bpe = AutoTokenizer.from_pretrained(str(tiny_models["bpe"]))
    assert type(bpe).__name__ in TOKENIZER_CLASSES
    assert bpe.tokenize(" hello") != bpe.tokenize("hello")
    assert "Ċ" in bpe.tokenize("a\nb") and "Ċ" not in bpe.tokenize("a b")
    unigram = AutoTokenizer.from_pretrained(str(tiny_models["unigram"]))
    assert unigram.tokenize("hello ") != unigram.tokenize("hello")
    assert unigram.tokenize("a\nb") != unigram.tokenize("a b")


@pytest.mark.parametrize(
    ("kind", "pooling", "normalize"),
    [("wordpiece", "mean", False), ("bpe", "mean", True), ("unigram", "cls", True)],
)
def test_sentence_transformers_config(
    tiny_models: dict[str, Path], kind: str, pooling: str, normalize: bool
) -> None:
    from parity.modelinfo import read_model_info

    info = read_model_info(tiny_models[kind])
    assert (info.pooling, info.normalize, info.max_length) == (pooling, normalize, 128)
    config = json.loads((tiny_models[kind] / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] in TOKENIZER_CLASSES


def test_unknown_kind(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown tiny model 'gpt'; choose from wordpiece, bpe"):
        build_tiny_model("gpt", tmp_path)
