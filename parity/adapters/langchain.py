"""`langchain`: the real `langchain_huggingface.HuggingFaceEmbeddings`, behaviour untouched."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from parity.adapters.base import Adapter, Option, parse_auto_bool, token_strings
from parity.adapters.sbert import SentenceTransformersAdapter, has_normalize_module, pooling_mode
from parity.adapters.tensors import free

NEWLINE_STEP = "replace \\n with space"


class LangChainAdapter(Adapter):
    """LangChain's sentence-transformers wrapper. It replaces "\\n" with " " before encoding."""

    name = "langchain"
    summary = "HuggingFaceEmbeddings(model_name=model).embed_documents / embed_query"
    requires = ("torch", "sentence_transformers", "langchain_huggingface")
    install_hint = "pip install langchain-huggingface"
    distributions = (
        *SentenceTransformersAdapter.distributions,
        "langchain-core",
        "langchain-huggingface",
    )
    options: ClassVar[dict[str, Option]] = {
        "mode": Option(
            "documents",
            "embed_documents or embed_query (one call per text)",
            choices=("documents", "query"),
        ),
        "normalize": Option(
            "auto", "encode_kwargs normalize_embeddings; auto = not passed", parse_auto_bool
        ),
    }

    def _load(self) -> None:
        from langchain_huggingface import HuggingFaceEmbeddings

        encode_kwargs: dict[str, Any] = {}
        if self.config["normalize"] != "auto":
            encode_kwargs["normalize_embeddings"] = bool(self.config["normalize"])
        device = self.config["device"]
        self.lc = self.shared(
            lambda: HuggingFaceEmbeddings(
                model_name=self.model,
                # passed on to SentenceTransformer: a local directory, never the hub
                model_kwargs={"device": device, "local_files_only": True},
                encode_kwargs=encode_kwargs,
            ),
            device,
            self.config["normalize"],
        )

    def _close(self) -> None:
        del self.lc
        free(self.config["device"])

    def _embed(self, texts: list[str]) -> np.ndarray:
        if self.config["mode"] == "query":
            return np.asarray([self.lc.embed_query(t) for t in texts], dtype=np.float32)
        return np.asarray(self.lc.embed_documents(texts), dtype=np.float32)

    def _client(self) -> Any:
        return self.lc._client

    def tokenize(self, texts: Sequence[str]) -> list[list[str]]:
        self.load()
        st = self._client()
        prepared = [t.replace("\n", " ") for t in texts]
        return token_strings(st.tokenizer, prepared, st.max_seq_length)

    def _describe(self) -> dict[str, Any]:
        st = self._client()
        lowercase = ["lowercase"] if getattr(st[0], "do_lower_case", False) else []
        return {
            "preprocessing": [NEWLINE_STEP, *lowercase],
            "tokenizer": type(st.tokenizer).__name__,
            "max_length": st.max_seq_length,
            "pooling": pooling_mode(st),
            "normalize": has_normalize_module(st) or self.config["normalize"] is True,
            "dtype": "float32",
            "instruction": "",
            "mode": self.config["mode"],
        }
