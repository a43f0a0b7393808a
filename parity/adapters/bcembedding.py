"""`bcembedding`: the real `BCEmbedding.EmbeddingModel`, with its own defaults."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from parity.adapters.base import Adapter, Option, parse_auto_int, token_strings
from parity.adapters.tensors import free

BCE_MAX_LENGTH = 512


class BCEmbeddingAdapter(Adapter):
    """NetEase Youdao's encoder: CLS pooling, max_length 512, unit vectors, no strip."""

    name = "bcembedding"
    summary = "BCEmbedding.EmbeddingModel(model).encode(texts)"
    requires = ("torch", "BCEmbedding")
    install_hint = "pip install --no-deps BCEmbedding==0.1.5"
    distributions = (*Adapter.distributions, "BCEmbedding")
    options: ClassVar[dict[str, Option]] = {
        "pooling": Option("cls", "EmbeddingModel(pooler=...)", choices=("cls", "mean")),
        "max_length": Option(BCE_MAX_LENGTH, "encode(max_length=...)", parse_auto_int),
        "dtype": Option(
            "float32", "float16 = EmbeddingModel(use_fp16=True)", choices=("float32", "float16")
        ),
        "instruction": Option("", "encode(query_instruction=...)"),
        # BCEmbedding's own default is 256, padded to each batch's longest text: 1,000 corpus
        # texts took 20.4 s length-sorted in batches of 256, 12.7 s in batches of 32 (max-abs
        # change 2.2e-7, batch noise). Give batch_size=256 to run it exactly as shipped.
        "batch_size": Option(32, "encode(batch_size=...); BCEmbedding's own default is 256", int),
    }

    def _load(self) -> None:
        EmbeddingModel = quiet_embedding_model()
        pooling, dtype, device = (self.config[k] for k in ("pooling", "dtype", "device"))
        self.bce = self.shared(
            lambda: EmbeddingModel(
                model_name_or_path=self.model,
                pooler=pooling,
                use_fp16=dtype == "float16",
                device=device,
                local_files_only=True,  # passed on to from_pretrained: never the hub
            ),
            pooling,
            dtype,
            device,
        )
        max_length = self.config["max_length"]
        if max_length == "auto":
            from parity.modelinfo import read_model_info

            max_length = read_model_info(self.model).max_length
        self.max_length = int(max_length)

    def _close(self) -> None:
        del self.bce
        free(self.config["device"])

    def _embed(self, texts: list[str]) -> np.ndarray:
        return self.bce.encode(
            texts,
            batch_size=int(self.config["batch_size"]),
            max_length=self.max_length,
            normalize_to_unit=True,
            enable_tqdm=False,
            query_instruction=self.config["instruction"],
        )

    def tokenize(self, texts: Sequence[str]) -> list[list[str]]:
        self.load()
        prefix = self.config["instruction"]
        return token_strings(self.bce.tokenizer, [prefix + t for t in texts], self.max_length)

    def _describe(self) -> dict[str, Any]:
        steps = [f"prefix {self.config['instruction']!r}"] if self.config["instruction"] else []
        return {
            "preprocessing": steps,
            "tokenizer": type(self.bce.tokenizer).__name__,
            "max_length": self.max_length,
            "pooling": self.config["pooling"],
            "normalize": True,
            "dtype": self.config["dtype"],
            "instruction": self.config["instruction"],
            "batch_size": self.config["batch_size"],
        }


def quiet_embedding_model() -> Any:
    """BCEmbedding's EmbeddingModel class, imported without its side effect on logging.

    Importing BCEmbedding calls logging.basicConfig(level=INFO) on the root logger, which would
    flood the user's process with every library's INFO lines: undo it."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    from BCEmbedding import EmbeddingModel

    root.setLevel(level)
    root.handlers[:] = handlers
    logging.getLogger("BCEmbedding").setLevel(logging.WARNING)
    return EmbeddingModel
