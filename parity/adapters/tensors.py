"""Torch helpers shared by the backends that run a transformers model themselves."""

from __future__ import annotations

from typing import Any

DTYPE_NAMES = ("float32", "float16", "bfloat16", "float64")


def torch_dtype(name: str) -> Any:
    import torch

    return {
        "float32": torch.float32,
        "float16": torch.float16,
        "bfloat16": torch.bfloat16,
        "float64": torch.float64,
    }[name]


def pool(token_embeddings: Any, attention_mask: Any, mode: str) -> Any:
    """Sentence vectors from token vectors: cls, mean (over unmasked tokens), last, or max."""
    import torch

    mask = attention_mask.to(token_embeddings.dtype).unsqueeze(-1)
    if mode == "cls":
        return token_embeddings[:, 0]
    if mode == "mean":
        return (token_embeddings * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    if mode == "last":
        last = attention_mask.sum(1) - 1
        return token_embeddings[torch.arange(len(last)), last.clamp(min=0)]
    if mode == "max":
        masked = token_embeddings.masked_fill(mask == 0, torch.finfo(token_embeddings.dtype).min)
        return masked.max(1).values
    raise ValueError(f"unknown pooling {mode!r}")


def free(device: str) -> None:
    """Return cached accelerator memory after a model is dropped."""
    import gc

    gc.collect()
    if device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()
