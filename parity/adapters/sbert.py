"""`sentence-transformers`: `SentenceTransformer(model).encode(...)` as users call it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from parity.adapters.base import (
    Adapter,
    Option,
    package_version,
    parse_auto_bool,
    token_strings,
)
from parity.adapters.tensors import DTYPE_NAMES, free, torch_dtype

STRIP_UNTIL = (5, 4)  # sentence-transformers stripped every input before 5.4.0


def strips_inputs(version: str | None) -> bool:
    """Whether this sentence-transformers version calls str.strip() on every text."""
    if not version:
        return False
    parts = []
    for piece in version.split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts) < STRIP_UNTIL


def has_normalize_module(st: Any) -> bool:
    """Whether a loaded SentenceTransformer ends in a Normalize module."""
    return any(type(m).__name__ == "Normalize" for m in st)


def pooling_mode(st: Any) -> str | None:
    """The pooling mode of a loaded SentenceTransformer's Pooling module, if it has one."""
    for module in st:
        if type(module).__name__ == "Pooling":
            mode = getattr(module, "pooling_mode", None)
            return mode if isinstance(mode, str) else str(module.get_pooling_mode_str())
    return None


def load_sentence_transformer(model: str, device: str, dtype: str, normalize: Any) -> Any:
    """Load a SentenceTransformer; normalize=False drops a Normalize module, True adds none."""
    from sentence_transformers import SentenceTransformer

    kwargs: dict[str, Any] = {"local_files_only": True}  # a local directory: never the hub
    if dtype != "float32":
        kwargs["model_kwargs"] = {"dtype": torch_dtype(dtype)}
    st = SentenceTransformer(model, device=device, **kwargs)
    if normalize is False and has_normalize_module(st):
        st = SentenceTransformer(
            modules=[m for m in st if type(m).__name__ != "Normalize"], device=device
        )
    return st


class SentenceTransformersAdapter(Adapter):
    """The reference most models are published for."""

    name = "sentence-transformers"
    summary = "SentenceTransformer(model).encode(texts)"
    requires = ("torch", "sentence_transformers")
    install_hint = "pip install sentence-transformers"
    distributions = (*Adapter.distributions, "sentence-transformers")
    options: ClassVar[dict[str, Option]] = {
        "batch_size": Option(32, "encode batch_size", int),
        "dtype": Option("float32", "model dtype", choices=DTYPE_NAMES),
        "normalize": Option(
            "auto", "normalize_embeddings; auto = the model's own modules", parse_auto_bool
        ),
        "prompt": Option("", "prompt prepended by encode(prompt=...)"),
    }

    def _load(self) -> None:
        device, dtype, normalize = (self.config[k] for k in ("device", "dtype", "normalize"))
        self.st = self.shared(
            lambda: load_sentence_transformer(self.model, device, dtype, normalize),
            device,
            dtype,
            normalize,
        )

    def _close(self) -> None:
        del self.st
        free(self.config["device"])

    def _embed(self, texts: list[str]) -> np.ndarray:
        kwargs: dict[str, Any] = {}
        if self.config["prompt"]:
            kwargs["prompt"] = self.config["prompt"]
        if self.config["normalize"] is True:
            kwargs["normalize_embeddings"] = True
        return self.st.encode(
            texts,
            batch_size=int(self.config["batch_size"]),
            show_progress_bar=False,
            convert_to_numpy=True,
            **kwargs,
        )

    def preprocess(self, texts: Sequence[str]) -> list[str]:
        prepared = [t.strip() for t in texts] if self.strips() else list(texts)
        prompt = self.config["prompt"]
        return [prompt + t for t in prepared] if prompt else prepared

    def strips(self) -> bool:
        return strips_inputs(package_version("sentence-transformers"))

    def tokenize(self, texts: Sequence[str]) -> list[list[str]]:
        self.load()
        return token_strings(self.st.tokenizer, self.preprocess(texts), self.st.max_seq_length)

    def _describe(self) -> dict[str, Any]:
        steps = ["strip"] if self.strips() else []
        if self.config["prompt"]:
            steps.append(f"prefix {self.config['prompt']!r}")
        if getattr(self.st[0], "do_lower_case", False):
            steps.append("lowercase")  # do_lower_case: a Lowercase normalizer in the tokenizer
        normalize = self.config["normalize"]
        return {
            "preprocessing": steps,
            "tokenizer": type(self.st.tokenizer).__name__,
            "max_length": self.st.max_seq_length,
            "pooling": pooling_mode(self.st),
            "normalize": has_normalize_module(self.st) if normalize == "auto" else bool(normalize),
            "dtype": self.config["dtype"],
            "instruction": self.config["prompt"],
            "batch_size": self.config["batch_size"],
        }
