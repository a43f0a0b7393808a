"""`mine`: an example adapter shipped by another package (found through an entry point)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from parity.adapters import Adapter
from parity.adapters.base import Option, parse_bool


class MineAdapter(Adapter):
    """A hand-written encoder: transformers' AutoModel, masked mean pooling, optional unit norm.

    A backend only loads and embeds; parity's Adapter base class validates the texts and the
    output (shape, dtype), times the calls, and turns a crash into a clear internal error."""

    name = "mine"
    summary = "an example plugin: AutoModel + masked mean pooling (examples/custom_adapter)"
    requires = ("torch", "transformers")
    install_hint = "pip install ./examples/custom_adapter"
    options: ClassVar[dict[str, Option]] = {
        "normalize": Option(True, "unit-normalize the pooled vector", parse_bool),
        "max_length": Option(256, "truncation limit in tokens", int),
    }

    def _load(self) -> None:
        from transformers import AutoModel, AutoTokenizer

        # a local directory only: an adapter never downloads
        self.tokenizer = AutoTokenizer.from_pretrained(self.model, local_files_only=True)
        self.encoder = AutoModel.from_pretrained(self.model, local_files_only=True).eval()

    def _embed(self, texts: list[str]) -> np.ndarray:
        import torch

        batch = self.tokenizer(
            texts,
            padding=True,
            truncation=True,
            max_length=self.config["max_length"],
            return_tensors="pt",
        )
        with torch.inference_mode():
            hidden = self.encoder(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        if self.config["normalize"]:
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
        return pooled.numpy()

    def _describe(self) -> dict[str, Any]:
        return {
            "tokenizer": type(self.tokenizer).__name__,
            "max_length": self.config["max_length"],
            "pooling": "mean",
            "normalize": self.config["normalize"],
            "dtype": "float32",
        }
