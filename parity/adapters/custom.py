"""`custom`: our own encoder in plain transformers, every step explicit, every stage kept."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, cast

import numpy as np

from parity.adapters.base import (
    Adapter,
    Option,
    parse_auto_bool,
    parse_auto_int,
    parse_bool,
    token_strings,
)
from parity.adapters.tensors import DTYPE_NAMES, free, pool, torch_dtype
from parity.modelinfo import read_model_info

STAGES = ("input_ids", "attention_mask", "token_embeddings", "pooled", "normalized")


class CustomAdapter(Adapter):
    """AutoTokenizer + AutoModel + pooling + normalization, like a hand-written production encoder.

    With `auto` everywhere it follows the model's sentence-transformers configuration.
    """

    name = "custom"
    summary = "our own transformers encoder (AutoTokenizer + AutoModel), every step configurable"
    requires = ("torch", "transformers")
    install_hint = "pip install torch==2.13.0 transformers"
    options: ClassVar[dict[str, Option]] = {
        "strip": Option(False, "strip() each text before tokenizing", parse_bool),
        "max_length": Option(
            "auto", "truncation limit; auto = the model's max_seq_length", parse_auto_int
        ),
        "dtype": Option("float32", "model dtype", choices=DTYPE_NAMES),
        "pooling": Option(
            "auto",
            "cls|mean|last|max; auto = the model's 1_Pooling config",
            choices=("auto", "cls", "mean", "last", "max"),
        ),
        "normalize": Option(
            "auto", "unit-normalize; auto = whether the model has Normalize", parse_auto_bool
        ),
        "instruction": Option("", "prefix added to every text"),
        "lowercase": Option(
            "auto",
            "lowercase in the tokenizer; auto = the model's do_lower_case",
            parse_auto_bool,
        ),
        "batch_size": Option(32, "texts per forward pass (sorted by length)", int),
    }

    def _load(self) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        info = read_model_info(self.model)
        self.info = info
        self.max_length = (
            info.max_length if self.config["max_length"] == "auto" else self.config["max_length"]
        )
        self.pooling = info.pooling if self.config["pooling"] == "auto" else self.config["pooling"]
        normalize = self.config["normalize"]
        self.normalize = info.normalize if normalize == "auto" else bool(normalize)
        self.dtype = torch_dtype(self.config["dtype"])
        self.device = self.config["device"]
        lowercase = self.config["lowercase"]
        self.lowercase = info.do_lower_case if lowercase == "auto" else bool(lowercase)

        def tokenizer() -> Any:
            loaded = AutoTokenizer.from_pretrained(self.model, local_files_only=True)
            if self.lowercase:
                lowercase_tokenizer(loaded)
            return loaded

        # shared: a variant with another max_length, pooling, strip ... reads no weights again
        self.tokenizer = self.shared(tokenizer, "tokenizer", self.lowercase)
        self.net = self.shared(
            lambda: (
                AutoModel.from_pretrained(self.model, dtype=self.dtype, local_files_only=True)
                .to(self.device)
                .eval()
            ),
            "model",
            self.config["dtype"],
            self.device,
        )
        self._torch = torch
        self.last_stages: dict[str, Any] = {}

    def _close(self) -> None:
        del self.net, self.tokenizer
        free(self.device)

    def preprocess(self, texts: Sequence[str]) -> list[str]:
        """Apply strip and the instruction prefix, in that order."""
        if self.config["strip"]:
            texts = [t.strip() for t in texts]
        prefix = self.config["instruction"]
        return [prefix + t for t in texts] if prefix else list(texts)

    def stages(self, texts: Sequence[str]) -> dict[str, Any]:
        """Run the pipeline and keep every stage, per text, in input order.

        input_ids / attention_mask / token_embeddings are lists of unpadded per-text arrays;
        pooled / normalized are (n, dim) float32 arrays.
        """
        torch = self._torch
        prepared = self.preprocess(texts)
        order = sorted(range(len(prepared)), key=lambda i: -len(prepared[i]))
        ids: list[Any] = [None] * len(prepared)
        masks: list[Any] = [None] * len(prepared)
        tokens: list[Any] = [None] * len(prepared)
        pooled: list[Any] = [None] * len(prepared)
        batch_size = int(self.config["batch_size"])
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                chunk = order[start : start + batch_size]
                batch = self.tokenizer(
                    [prepared[i] for i in chunk],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                ).to(self.device)
                hidden = self.net(**batch).last_hidden_state
                vectors = pool(hidden, batch["attention_mask"], self.pooling).float().cpu()
                for row, i in enumerate(chunk):
                    mask = batch["attention_mask"][row].bool()
                    ids[i] = batch["input_ids"][row][mask].cpu().numpy()
                    masks[i] = batch["attention_mask"][row].cpu().numpy()[: int(mask.sum())]
                    tokens[i] = hidden[row][mask].float().cpu().numpy()
                    pooled[i] = vectors[row].numpy()
        pooled_array = np.stack(pooled).astype(np.float32) if pooled else np.zeros((0, 0))
        normalized = pooled_array
        if self.normalize:
            norms = np.linalg.norm(pooled_array.astype(np.float64), axis=1, keepdims=True)
            normalized = (pooled_array / np.maximum(norms, 1e-12)).astype(np.float32)
        self.last_stages = {
            "input_ids": ids,
            "attention_mask": masks,
            "token_embeddings": tokens,
            "pooled": pooled_array,
            "normalized": normalized,
        }
        return self.last_stages

    def _embed(self, texts: list[str]) -> np.ndarray:
        return self.stages(texts)["normalized"]

    def tokenize(self, texts: Sequence[str]) -> list[list[str]]:
        self.load()
        return token_strings(self.tokenizer, self.preprocess(texts), self.max_length)

    def _describe(self) -> dict[str, Any]:
        steps = ["strip"] if self.config["strip"] else []
        if self.config["instruction"]:
            steps.append(f"prefix {self.config['instruction']!r}")
        if self.lowercase:
            steps.append("lowercase")
        return {
            "preprocessing": steps,
            "tokenizer": type(self.tokenizer).__name__,
            "max_length": self.max_length,
            "pooling": self.pooling,
            "normalize": self.normalize,
            "dtype": self.config["dtype"],
            "instruction": self.config["instruction"],
            "batch_size": self.config["batch_size"],
        }


def lowercase_tokenizer(tokenizer: Any) -> None:
    """Lowercase as sentence-transformers does for do_lower_case (Transformer.__init__): put a
    Lowercase normalizer in front of a fast tokenizer's own, or set a slow one's flag. Not
    str.lower(): the normalizer differs from it (a final sigma, recent Unicode letters)."""
    if not tokenizer.is_fast:
        try:
            tokenizer.do_lower_case = True
        except AttributeError:
            tokenizer.basic_tokenizer.do_lower_case = True
        return
    from tokenizers.normalizers import Lowercase
    from tokenizers.normalizers import Sequence as NormalizerSequence

    backend = tokenizer.backend_tokenizer
    normalizer = backend.normalizer
    inner: list[Any] = [normalizer]
    if isinstance(normalizer, NormalizerSequence):
        inner = list(cast(Any, normalizer))  # iterable at runtime; the stubs do not say so
    if any(isinstance(n, Lowercase) for n in inner):
        return
    backend.normalizer = NormalizerSequence([Lowercase(), *(n for n in inner if n is not None)])
