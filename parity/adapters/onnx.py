"""`onnx`: a `model.onnx` of token embeddings in onnxruntime, tokenized with `tokenizers`, pooled and
normalized in numpy as the directory's sentence-transformers config says."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from parity.adapters.base import Adapter, Option, parse_auto_bool, parse_auto_int
from parity.errors import AdapterError, ModelNotFound
from parity.modelinfo import read_model_info

ONNX_FILE = "model.onnx"
# operators onnxruntime's quantizers put into a graph (dynamic: MatMulInteger with
# DynamicQuantizeLinear; static/QDQ: QuantizeLinear/DequantizeLinear, QLinear*); "QLinear" is a prefix
QUANTIZED_OPS = (
    "MatMulInteger",
    "ConvInteger",
    "DynamicQuantizeLinear",
    "DynamicQuantizeMatMul",
    "MatMulIntegerToFloat",
    "QuantizeLinear",
    "DequantizeLinear",
    "QAttention",
    "QGemm",
    "QEmbedLayerNormalization",
    "MatMulNBits",
)
ONNX_DTYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
}


def onnx_directory(label: str, model: str) -> Path:
    """The model directory of an onnx-backed side, or ModelNotFound when it has no model.onnx."""
    path = Path(model)
    if not (path / ONNX_FILE).is_file():
        raise ModelNotFound(
            f"{label}: no {ONNX_FILE} in {str(path)!r}; pass model=DIR with a directory "
            "that `parity export-onnx --out DIR` wrote"
        )
    return path


def quantized_operators(path: str | Path) -> dict[str, int] | None:
    """Quantized operator types in an ONNX file and how often each occurs ({} for none), or None
    when the `onnx` package is not installed to read the graph."""
    try:
        import onnx
    except ImportError:
        return None
    graph = onnx.load(str(path), load_external_data=False).graph
    counts = Counter(
        node.op_type
        for node in graph.node
        if node.op_type in QUANTIZED_OPS or node.op_type.startswith("QLinear")
    )
    return dict(sorted(counts.items()))


def mean_pool(tokens: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """sentence-transformers' mean: the sum of real tokens over their count (clamped at 1e-9)."""
    weights = mask[:, :, None].astype(tokens.dtype)
    return (tokens * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)


def cls_pool(tokens: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The first token's embedding."""
    return tokens[:, 0]


def last_pool(tokens: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The last real token's embedding, wherever the padding is (left or right)."""
    last = mask.shape[1] - 1 - np.argmax(mask[:, ::-1], axis=1)
    return tokens[np.arange(tokens.shape[0]), last]


POOLERS = {"mean": mean_pool, "cls": cls_pool, "last": last_pool}


def normalize_rows(vectors: np.ndarray) -> np.ndarray:
    """torch.nn.functional.normalize: each row over max(its L2 norm, 1e-12)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def load_tokenizer(model: Path, max_length: int, lowercase: bool) -> Any:
    """tokenizer.json with truncation at `max_length` and padding to the batch's longest text
    (a tokenizer.json may carry a fixed padding length: MiniLM's pads to 128)."""
    from tokenizers import Tokenizer
    from tokenizers.normalizers import Lowercase
    from tokenizers.normalizers import Sequence as NormalizerSequence

    tokenizer = Tokenizer.from_file(str(model / "tokenizer.json"))
    padding = tokenizer.padding or {}
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_length)
    tokenizer.enable_padding(
        pad_id=padding.get("pad_id", 0),
        pad_token=padding.get("pad_token", "[PAD]"),
        direction=padding.get("direction", "right"),
    )
    if lowercase:  # do_lower_case in sentence_bert_config.json: a Lowercase normalizer in front
        inner = [tokenizer.normalizer] if tokenizer.normalizer is not None else []
        tokenizer.normalizer = NormalizerSequence([Lowercase(), *inner])
    return tokenizer


class OnnxAdapter(Adapter):
    """A directory with model.onnx (token embeddings out) and the model's tokenizer and config,
    as `parity export-onnx` writes it: pooling and normalization run outside the graph."""

    name = "onnx"
    summary = "onnxruntime on DIR/model.onnx, tokenizers, numpy pooling and normalization"
    requires = ("onnxruntime", "tokenizers")
    install_hint = "pip install onnxruntime tokenizers"
    distributions = ("onnxruntime", "tokenizers", "numpy")
    options: ClassVar[dict[str, Option]] = {
        "pooling": Option(
            "auto",
            "mean|cls|last; auto = the model's 1_Pooling config",
            choices=("auto", "mean", "cls", "last"),
        ),
        "normalize": Option(
            "auto", "unit-normalize; auto = whether the model has Normalize", parse_auto_bool
        ),
        "max_length": Option(
            "auto", "truncation limit; auto = the model's max_seq_length", parse_auto_int
        ),
        "batch_size": Option(32, "texts per session run (sorted by length)", int),
        "provider": Option("CPUExecutionProvider", "onnxruntime execution provider"),
    }

    def _load(self) -> None:
        import onnxruntime as ort

        path = onnx_directory(self.label, self.model)
        if self.config["device"] != "cpu":
            raise AdapterError(
                f"{self.label}: device= is torch's; onnxruntime takes provider= instead "
                "(e.g. provider=CUDAExecutionProvider)"
            )
        info = read_model_info(path)
        self.max_length = self._setting("max_length", info.max_length)
        self.pooling = self._setting("pooling", info.pooling)
        if self.pooling not in POOLERS:
            raise AdapterError(
                f"{self.label}: the model pools with {self.pooling!r}, which the onnx adapter "
                f"does not implement; set pooling= to one of {', '.join(POOLERS)}"
            )
        self.normalize = bool(self._setting("normalize", info.normalize))
        self.lowercase = info.do_lower_case
        self.tokenizer = load_tokenizer(path, self.max_length, self.lowercase)
        available = ort.get_available_providers()
        if self.config["provider"] not in available:
            raise AdapterError(
                f"{self.label}: provider {self.config['provider']!r} is not available here; "
                f"choose from {', '.join(available)}"
            )
        provider = self.config["provider"]
        self.session = self.shared(
            lambda: ort.InferenceSession(str(path / ONNX_FILE), providers=[provider]),
            "session",
            provider,
        )
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.quantized = quantized_operators(path / ONNX_FILE)

    def on_cpu(self) -> bool:
        return bool(self.config["provider"] == "CPUExecutionProvider")

    def _setting(self, key: str, model_value: Any) -> Any:
        value = self.config[key]
        return model_value if value == "auto" else value

    def _close(self) -> None:
        del self.session, self.tokenizer

    def _embed(self, texts: list[str]) -> np.ndarray:
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        vectors: list[Any] = [None] * len(texts)
        batch_size = int(self.config["batch_size"])
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            pooled = self._run([texts[i] for i in chunk])
            for row, i in enumerate(chunk):
                vectors[i] = pooled[row]
        return np.stack(vectors)

    def _run(self, texts: list[str]) -> np.ndarray:
        """One session run: token embeddings, pooled, normalized if the model says so."""
        encodings = self.tokenizer.encode_batch(texts)
        given = {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
        }
        tokens = self.session.run(None, {n: given[n] for n in self.input_names})[0]
        pooled = POOLERS[self.pooling](tokens, given["attention_mask"])
        return normalize_rows(pooled) if self.normalize else pooled

    def tokenize(self, texts: Sequence[str]) -> list[list[str]]:
        self.load()
        return [
            [t for t, m in zip(e.tokens, e.attention_mask, strict=True) if m]
            for e in self.tokenizer.encode_batch(list(texts))
        ]

    def _describe(self) -> dict[str, Any]:
        output_type = self.session.get_outputs()[0].type
        operators = self.quantized
        return {
            "preprocessing": ["lowercase"] if self.lowercase else [],
            "tokenizer": "tokenizers.Tokenizer (tokenizer.json)",
            "max_length": self.max_length,
            "pooling": self.pooling,
            "normalize": self.normalize,
            "dtype": ONNX_DTYPES.get(output_type, output_type),
            "quantized": None if operators is None else bool(operators),
            "quantized_operators": operators,
            "provider": self.config["provider"],
            "batch_size": self.config["batch_size"],
        }
