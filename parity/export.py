"""`parity export-onnx`: a model's transformer as ONNX, with the files that say how to pool it."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from parity.adapters.onnx import ONNX_FILE
from parity.errors import AdapterUnavailable, ParityInputError
from parity.modelinfo import resolve_model

MIN_OPSET = 18  # the torch.export-based exporter writes opset 18 and newer only
DEFAULT_OPSET = 18
OUTPUT_NAME = "token_embeddings"
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
# what a model directory carries besides its weights: tokenizer, architecture, ST modules
COPIED_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "sentencepiece.bpe.model",
    "spiece.model",
    "config.json",
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
)
# sentence-transformers modules the onnx adapter applies outside the graph, in numpy
KNOWN_MODULES = ("Transformer", "Pooling", "Normalize")
EXPORT_CHECK_TOL = 1e-3  # the graph must reproduce torch's token embeddings this closely
SAMPLE_TEXTS = ("a short text", "a somewhat longer sample text, so the two lengths differ")


def export_onnx(
    model: str | Path | None,
    out: str | Path,
    *,
    opset: int = DEFAULT_OPSET,
    quantize: str | None = None,
    progress: Callable[[str], None] = lambda message: None,
) -> Path:
    """Write `out/model.onnx` (token embeddings, dynamic batch and sequence axes) and the model's
    tokenizer and sentence-transformers files; with quantize="int8", dynamically quantized."""
    source = resolve_model(model)
    target = Path(out).expanduser()
    _check_request(source, target, opset, quantize)
    with tempfile.TemporaryDirectory(prefix="parity-export-") as scratch:
        graph = Path(scratch) / ONNX_FILE
        progress(f"exporting {source} to ONNX (opset {opset})")
        _export_graph(source, graph, opset)
        if quantize == "int8":
            progress("quantizing to int8 (onnxruntime dynamic quantization)")
            _quantize_int8(graph, Path(scratch) / "model.int8.onnx")
            graph = Path(scratch) / "model.int8.onnx"
        # only now: a failed export leaves no directory behind
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(graph, target / ONNX_FILE)
    copied = _copy_model_files(source, target)
    progress(f"copied {', '.join(copied)}")
    progress(f"wrote {target / ONNX_FILE}")
    return target


def _check_request(source: Path, target: Path, opset: int, quantize: str | None) -> None:
    """Refuse, before any work, what cannot give a usable directory."""
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        what = "is not a directory" if not target.is_dir() else "exists and is not empty"
        raise ParityInputError(
            f"--out {str(target)!r} {what}; choose a new directory (export-onnx never overwrites)"
        )
    onnx = _onnx()
    newest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= newest:
        raise ParityInputError(
            f"--opset {opset} is not supported: the torch.export-based exporter writes opset "
            f"{MIN_OPSET} to {newest}"
        )
    if quantize not in (None, "int8"):
        raise ParityInputError(f"--quantize {quantize!r} is not supported; use int8")
    if not (source / "tokenizer.json").is_file():
        raise ParityInputError(
            f"{source} has no tokenizer.json (a fast tokenizer file); the onnx adapter "
            "tokenizes with the tokenizers library and needs it"
        )
    extra = [m.get("type", "?") for m in _modules(source) if _module_kind(m) not in KNOWN_MODULES]
    if extra:
        raise ParityInputError(
            f"{source} has modules export-onnx cannot carry outside the graph: "
            f"{', '.join(extra)}; it exports the transformer, pooling and normalization only"
        )


def _onnx() -> Any:
    """The onnx package, or AdapterUnavailable with the install step: the export also needs
    onnxscript (torch's torch.export-based exporter writes the graph with it)."""
    missing = ""
    try:
        import onnx
    except ImportError:
        missing = "onnx"
    try:
        if importlib.util.find_spec("onnxscript") is None:
            missing = missing or "onnxscript"
    except (ImportError, ValueError):  # ValueError: sys.modules holds None for it
        missing = missing or "onnxscript"
    if missing:
        raise AdapterUnavailable(
            f"export-onnx needs the {missing} package, which is not installed; install with "
            "`pip install 'parity[onnx]'`"
        )
    return onnx


def _modules(source: Path) -> list[dict[str, Any]]:
    path = source / "modules.json"
    if not path.is_file():
        return []
    try:
        return list(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError) as exc:
        raise ParityInputError(f"{path}: cannot read modules.json: {exc}") from None


def _module_kind(module: dict[str, Any]) -> str:
    return str(module.get("type", "")).rpartition(".")[2]


def _token_embeddings(net: Any, names: list[str]) -> Any:
    """AutoModel wrapped so the graph takes `names` in order and its one output is
    last_hidden_state (the token embeddings)."""
    import torch

    class TokenEmbeddings(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any = None) -> Any:
            given = {"attention_mask": attention_mask, "token_type_ids": token_type_ids}
            kwargs = {n: given[n] for n in names if n != "input_ids"}
            return self.net(input_ids=input_ids, **kwargs).last_hidden_state

    return TokenEmbeddings().eval()


def _export_graph(source: Path, path: Path, opset: int) -> None:
    """torch.onnx.export with dynamo=True, then a check that onnxruntime reproduces torch.

    Why dynamo: measured on all-MiniLM-L6-v2 with torch 2.13 and transformers 5, the legacy
    TorchScript exporter (dynamo=False) traces transformers' attention-mask code with Python
    shape checks frozen as constants (TracerWarning in masking_utils), and its graph gives token
    embeddings off by up to 5.5 on another batch shape; the torch.export graph stays within 3e-5.
    """
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
    net = AutoModel.from_pretrained(source, local_files_only=True, dtype=torch.float32).eval()
    sample = tokenizer(list(SAMPLE_TEXTS), padding=True, return_tensors="pt")
    names = [name for name in INPUT_NAMES if name in sample]
    inputs = tuple(sample[name] for name in names)
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    with warnings.catch_warnings(), quiet_logs():
        # the exporter's own notices (deprecated internals, dynamic-shape renames): not ours
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _token_embeddings(net, names),
            inputs,
            str(path),
            input_names=names,
            output_names=[OUTPUT_NAME],
            dynamic_shapes={name: {0: batch, 1: sequence} for name in names},
            opset_version=opset,
            dynamo=True,
            external_data=False,
            verbose=False,
        )
    _check_graph(path, tokenizer, net, names)


def _check_graph(path: Path, tokenizer: Any, net: Any, names: list[str]) -> None:
    """Run the graph on another batch shape than the export's; a graph that does not reproduce
    torch is a broken export, never written as if it were good."""
    import onnxruntime as ort
    import torch

    texts = ["one", *SAMPLE_TEXTS]
    encoded = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        expected = net(**{n: encoded[n] for n in names}).last_hidden_state.numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {n: encoded[n].numpy().astype(np.int64) for n in names})[0]
    mask = encoded["attention_mask"].numpy().astype(bool)
    worst = float(np.abs(got[mask] - expected[mask]).max())
    if worst > EXPORT_CHECK_TOL:
        raise RuntimeError(
            f"the exported graph differs from torch by {worst:.3g} on real tokens "
            f"(limit {EXPORT_CHECK_TOL}); the export is broken"
        )


def _quantize_int8(fp32: Path, target: Path) -> None:
    """onnxruntime's dynamic quantization: int8 weights, activations quantized per batch at run
    time (MatMulInteger + DynamicQuantizeLinear).

    Per channel: measured on all-MiniLM-L6-v2 (40 built-in texts, against the fp32 export), the
    per-tensor default moves vectors by cosine distance 0.050 on average (0.098 at worst),
    per-channel weights by 0.0087 (0.017); reduce_range made it worse (0.157)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with quiet_logs():
        quantize_dynamic(fp32, target, weight_type=QuantType.QInt8, per_channel=True)


@contextlib.contextmanager
def quiet_logs() -> Iterator[None]:
    """No log records up to WARNING while exporting: torch logs a line per torchvision op it skips,
    and quantize_dynamic advice to pre-process through the root logger (which would install a
    stderr handler for the rest of the process); parity's progress lines say what happens."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def _copy_model_files(source: Path, target: Path) -> list[str]:
    """Tokenizer, config and the sentence-transformers module folders (pooling, normalize), so
    the directory is a model directory other tools read too (fastembed, tokenizers)."""
    copied = []
    for name in COPIED_FILES:
        if (source / name).is_file():
            shutil.copyfile(source / name, target / name)
            copied.append(name)
    for module in _modules(source):
        folder = str(module.get("path", ""))
        if folder and (source / folder).is_dir():
            shutil.copytree(source / folder, target / folder)
            copied.append(folder + "/")
    return copied
