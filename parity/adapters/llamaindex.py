"""`llamaindex`: the real `llama_index.embeddings.huggingface.HuggingFaceEmbedding`, untouched."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from parity.adapters.base import Adapter, Option, parse_bool, token_strings
from parity.adapters.sbert import SentenceTransformersAdapter, has_normalize_module, pooling_mode
from parity.adapters.tensors import free

# What llama-index-embeddings-huggingface 0.8.0 (base.py, HuggingFaceEmbedding) does, read in
# its source:
# - __init__ loads `SentenceTransformer(model_name, device=..., cache_folder=...,
#   prompts={"query": query_instruction or get_query_instruct_for_model_name(model_name),
#   "text": text_instruction or get_text_instruct_for_model_name(model_name)}, **model_kwargs)`:
#   the model is sentence-transformers'; our local_files_only=True goes through **model_kwargs.
#   For a local path neither name table (BGE_MODELS, INSTRUCTOR_MODELS in utils.py) matches, so
#   the default prompts are "" (nothing prefixed).
# - `if max_length: model.max_seq_length = max_length`, else it keeps the model's own.
# - `_embed` calls `self._model.encode(inputs, batch_size=self.embed_batch_size,
#   prompt_name=..., normalize_embeddings=self.normalize)`, normalize=True by default: unit
#   vectors even for a model without a Normalize module.
# - get_text_embedding_batch (core base.py) only cuts the list into embed_batch_size chunks for
#   `_get_text_embeddings` (prompt_name="text"); get_query_embedding calls `_embed([query],
#   prompt_name="query")`. No strip, no newline replacement: sentence-transformers >= 5.4 adds
#   the prompt as `prompt + text` (base/model.py preprocess), with no space in between (unlike
#   the Inference API class's format_text, f"{instruction} {text}".strip(), not used here).
DEFAULT_BATCH_SIZE = 10  # llama_index.core DEFAULT_EMBED_BATCH_SIZE


def _max_length(raw: str) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        raise ValueError("expected a whole number of tokens (0 = the model's own)") from None
    if value < 0:
        raise ValueError("expected a whole number of tokens (0 = the model's own)")
    return value


class LlamaIndexAdapter(Adapter):
    """LlamaIndex's Hugging Face embedding: sentence-transformers under it, unit vectors by default."""

    name = "llamaindex"
    summary = (
        "HuggingFaceEmbedding(model_name=model).get_text_embedding_batch / get_query_embedding"
    )
    requires = ("torch", "sentence_transformers", "llama_index.embeddings.huggingface")
    install_hint = "pip install llama-index-embeddings-huggingface"
    distributions = (
        *SentenceTransformersAdapter.distributions,
        "llama-index-core",
        "llama-index-embeddings-huggingface",
    )
    options: ClassVar[dict[str, Option]] = {
        "mode": Option(
            "documents",
            "get_text_embedding_batch, or get_query_embedding (one call per text)",
            choices=("documents", "query"),
        ),
        "query_instruction": Option("", "prefix for query mode (query_instruction=)"),
        "text_instruction": Option("", "prefix for documents mode (text_instruction=)"),
        "normalize": Option(True, "normalize= (LlamaIndex's default: true)", parse_bool),
        "batch_size": Option(DEFAULT_BATCH_SIZE, "embed_batch_size", int),
        "max_length": Option(0, "max_length=; 0 = the model's max_seq_length", _max_length),
    }

    def _load(self) -> None:
        from llama_index.embeddings.huggingface import HuggingFaceEmbedding

        self.li = HuggingFaceEmbedding(
            model_name=self.model,
            max_length=self.config["max_length"] or None,
            query_instruction=self.config["query_instruction"] or None,
            text_instruction=self.config["text_instruction"] or None,
            normalize=bool(self.config["normalize"]),
            embed_batch_size=int(self.config["batch_size"]),
            device=self.config["device"],
            local_files_only=True,  # **model_kwargs to SentenceTransformer: never the hub
        )

    def _close(self) -> None:
        del self.li
        free(self.config["device"])

    def _embed(self, texts: list[str]) -> np.ndarray:
        if self.config["mode"] == "query":
            return np.asarray([self.li.get_query_embedding(t) for t in texts], dtype=np.float32)
        return np.asarray(self.li.get_text_embedding_batch(texts), dtype=np.float32)

    def _client(self) -> Any:
        return self.li._model

    def instruction(self) -> str:
        """The prefix this mode adds: the prompt HuggingFaceEmbedding gave sentence-transformers."""
        prompt = self._client().prompts.get("query" if self.config["mode"] == "query" else "text")
        return str(prompt or "")

    def tokenize(self, texts: Sequence[str]) -> list[list[str]]:
        self.load()
        st = self._client()
        prefix = self.instruction()
        return token_strings(st.tokenizer, [prefix + t for t in texts], st.max_seq_length)

    def _describe(self) -> dict[str, Any]:
        st = self._client()
        prefix = self.instruction()
        steps = [f"prefix {prefix!r}"] if prefix else []
        if getattr(st[0], "do_lower_case", False):
            steps.append("lowercase")
        return {
            "preprocessing": steps,
            "tokenizer": type(st.tokenizer).__name__,
            "max_length": st.max_seq_length,
            "pooling": pooling_mode(st),
            "normalize": bool(self.config["normalize"]) or has_normalize_module(st),
            "dtype": "float32",
            "instruction": prefix,
            "mode": self.config["mode"],
            "batch_size": self.config["batch_size"],
        }
