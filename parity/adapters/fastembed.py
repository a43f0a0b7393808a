"""`fastembed`: the real `fastembed.TextEmbedding` on a local ONNX directory, never a download."""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from parity.adapters.base import Adapter, Option, parse_auto_bool, parse_auto_int
from parity.adapters.onnx import ONNX_FILE, onnx_directory, quantized_operators
from parity.errors import AdapterError
from parity.modelinfo import read_model_info

POOLING_TYPES = {"mean": "MEAN", "cls": "CLS", "last": "LAST_TOKEN"}


class FastEmbedAdapter(Adapter):
    """`TextEmbedding(name, specific_model_path=DIR)` with a custom model description, as a user
    registers a model fastembed does not list: fastembed pools and normalizes as the description
    says, and truncates where the directory's tokenizer_config.json says (not max_seq_length)."""

    name = "fastembed"
    summary = "fastembed.TextEmbedding on a local ONNX directory (specific_model_path)"
    requires = ("fastembed",)
    install_hint = "pip install fastembed"
    distributions = ("fastembed", "onnxruntime", "tokenizers", "numpy")
    options: ClassVar[dict[str, Option]] = {
        "pooling": Option(
            "auto",
            "the description's pooling: mean|cls|last; auto = the model's 1_Pooling config",
            choices=("auto", "mean", "cls", "last"),
        ),
        "normalize": Option(
            "auto",
            "the description's normalization; auto = whether the model has Normalize",
            parse_auto_bool,
        ),
        "max_length": Option(
            "auto",
            "truncation; auto = fastembed's own (tokenizer_config.json model_max_length), "
            "N = enable_truncation(N) on its tokenizer",
            parse_auto_int,
        ),
        "batch_size": Option(256, "TextEmbedding.embed batch_size", int),
    }

    def _load(self) -> None:
        path = onnx_directory(self.label, self.model)
        if self.config["device"] != "cpu":
            raise AdapterError(
                f"{self.label}: device= is torch's; this adapter runs fastembed on onnxruntime's "
                "CPUExecutionProvider"
            )
        info = read_model_info(path)
        pooling = info.pooling if self.config["pooling"] == "auto" else self.config["pooling"]
        if pooling not in POOLING_TYPES:
            raise AdapterError(
                f"{self.label}: the model pools with {pooling!r}, which fastembed does not "
                f"offer; set pooling= to one of {', '.join(POOLING_TYPES)}"
            )
        normalize = self.config["normalize"]
        self.pooling = pooling
        self.normalize = info.normalize if normalize == "auto" else bool(normalize)
        # fastembed writes nothing under specific_model_path, but it creates its cache_dir
        self.cache_dir = tempfile.mkdtemp(prefix="parity-fastembed-")
        try:
            self._load_embedding(path)
        except BaseException as exc:
            # close() runs only after a load that succeeded: remove the directory here
            shutil.rmtree(self.cache_dir, ignore_errors=True)
            from onnxruntime.capi.onnxruntime_pybind11_state import InvalidProtobuf

            if isinstance(exc, InvalidProtobuf):  # a damaged file is the user's input: exit 2
                raise AdapterError(
                    f"{self.label}: {path / ONNX_FILE} is not a valid ONNX graph; export it "
                    "again with `parity export-onnx`"
                ) from exc
            raise

    def _load_embedding(self, path: Path) -> None:
        self.embedding = self._text_embedding(path)
        self.tokenizer = self.embedding.model.tokenizer
        if self.config["max_length"] != "auto":
            direction = (self.tokenizer.truncation or {}).get("direction", "right")
            self.tokenizer.enable_truncation(self.config["max_length"], direction=direction)
        self.max_length = int(self.tokenizer.truncation["max_length"])
        self.quantized = quantized_operators(path / ONNX_FILE)

    def _text_embedding(self, path: Path) -> Any:
        """Register the description (once per name) and load it from `path`. fastembed's
        download_model returns specific_model_path before any hub or URL lookup
        (common/model_management.py), and local_files_only=True stops any fallback."""
        from fastembed import TextEmbedding
        from fastembed.common.model_description import ModelSource, PoolingType

        key = f"{path.resolve()}|{self.pooling}|{self.normalize}"
        name = f"parity-local/{hashlib.sha256(key.encode()).hexdigest()[:16]}"
        known = {m["model"] for m in TextEmbedding.list_supported_models()}
        if name not in known:
            TextEmbedding.add_custom_model(
                model=name,
                pooling=PoolingType(POOLING_TYPES[self.pooling]),
                normalization=self.normalize,
                sources=ModelSource(hf=name),  # never fetched: specific_model_path wins
                dim=_hidden_size(path),
                model_file=ONNX_FILE,
            )
        return TextEmbedding(
            name,
            cache_dir=self.cache_dir,
            specific_model_path=str(path),
            local_files_only=True,
            providers=["CPUExecutionProvider"],
        )

    def _close(self) -> None:
        del self.embedding, self.tokenizer
        shutil.rmtree(self.cache_dir, ignore_errors=True)

    def _embed(self, texts: list[str]) -> np.ndarray:
        vectors = self.embedding.embed(texts, batch_size=int(self.config["batch_size"]))
        return np.stack(list(vectors))

    def tokenize(self, texts: Sequence[str]) -> list[list[str]]:
        self.load()
        return [
            [t for t, m in zip(e.tokens, e.attention_mask, strict=True) if m]
            for e in self.tokenizer.encode_batch(list(texts))
        ]

    def _describe(self) -> dict[str, Any]:
        return {
            "tokenizer": "tokenizers.Tokenizer (fastembed load_tokenizer)",
            "max_length": self.max_length,
            "pooling": self.pooling,
            "normalize": self.normalize,
            "dtype": "float32",  # fastembed casts the pooled output back to the graph's float32
            "quantized": None if self.quantized is None else bool(self.quantized),
            "quantized_operators": self.quantized,
            "batch_size": self.config["batch_size"],
        }


def _hidden_size(path: Path) -> int:
    """The vector size fastembed's description needs: config.json's hidden_size."""
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        return int(config["hidden_size"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise AdapterError(
            f"{path}: cannot read hidden_size from config.json ({exc}); fastembed needs the "
            "vector size"
        ) from None
