"""The adapter interface: `embed()` validates and times, backends implement `_load`/`_embed`."""

from __future__ import annotations

import abc
import importlib.metadata
import importlib.util
import platform
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from parity.adapters.shared import acquire, release
from parity.cache import model_stamp
from parity.errors import (
    AdapterCrash,
    AdapterError,
    AdapterUnavailable,
    ParityError,
    ParityInputError,
    SpecError,
)
from parity.texts import unencodable

VERSIONED_PACKAGES = (
    "torch",
    "transformers",
    "tokenizers",
    "sentence-transformers",
    "langchain-core",
    "langchain-huggingface",
    "BCEmbedding",
    "numpy",
)


def package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def library_versions(names: Sequence[str] = VERSIONED_PACKAGES) -> dict[str, str | None]:
    """Installed versions of the named distributions (None when absent), plus python."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    versions.update({name: package_version(name) for name in names})
    return versions


def parse_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expected true or false (or 1/0, yes/no, on/off)")


def parse_positive_int(raw: str) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        raise ValueError("expected a positive whole number") from None
    if value <= 0:
        raise ValueError("expected a positive whole number")
    return value


def parse_auto_int(raw: str) -> int | str:
    if raw.strip().lower() == "auto":
        return "auto"
    try:
        return parse_positive_int(raw)
    except ValueError:
        raise ValueError("expected a positive whole number or auto") from None


def parse_auto_bool(raw: str) -> bool | str:
    if raw.strip().lower() == "auto":
        return "auto"
    try:
        return parse_bool(raw)
    except ValueError:
        raise ValueError("expected true, false or auto") from None


# a bare builtin in an Option stands for our parser of that type, whose errors name the valid form
_BUILTIN_PARSERS: dict[Callable[[str], Any], Callable[[str], Any]] = {int: parse_positive_int}


@dataclass(frozen=True)
class Option:
    """One configurable setting of an adapter: its default, how to parse it, its allowed values."""

    default: Any
    help: str
    parse: Callable[[str], Any] = str
    choices: tuple[str, ...] | None = None
    required: bool = False  # AdapterSpec.parse refuses a spec without it

    def coerce(self, adapter: str, key: str, raw: Any) -> Any:
        """The value of `key=raw`, or SpecError naming the option and its valid form."""
        if not isinstance(raw, str):
            return raw
        if self.choices is not None and raw not in self.choices:
            raise SpecError(
                f"{adapter}: {key}={raw!r} is not valid; choose from {', '.join(self.choices)}"
            )
        try:
            return _BUILTIN_PARSERS.get(self.parse, self.parse)(raw)
        except ValueError as exc:
            raise SpecError(f"{adapter}: {key}={raw!r}: {exc}") from None


COMMON_OPTIONS: dict[str, Option] = {
    "device": Option("cpu", "torch device: cpu, cuda, cuda:0, mps"),
}


def is_loading_error(exc: Exception) -> bool:
    """Whether `exc` from `_load` says the model directory is missing, incomplete or damaged (the
    user can fix it: exit 2) rather than that a framework or parity itself failed (exit 3).

    Measured on a damaged tiny model: a missing or invalid config.json or weights file raises
    OSError or ValueError (json.JSONDecodeError is one) from transformers/sentence-transformers,
    damaged weights SafetensorError or pickle.UnpicklingError (a .bin through torch.load), a
    tokenizer.json the Rust tokenizers library cannot parse a bare Exception, and a damaged
    model.onnx onnxruntime's InvalidProtobuf.
    """
    import pickle

    if isinstance(exc, (OSError, ValueError, pickle.UnpicklingError)) or type(exc) is Exception:
        return True
    # onnxruntime on a damaged or foreign model.onnx (measured: InvalidProtobuf; NoSuchFile and
    # InvalidGraph are its siblings for a missing file and a graph it cannot run)
    if type(exc).__module__.startswith("onnxruntime") and type(exc).__name__ in (
        "InvalidProtobuf",
        "NoSuchFile",
        "InvalidGraph",
    ):
        return True
    try:
        from safetensors import SafetensorError
    except ImportError:  # no safetensors installed: no error of its kind either
        return False
    return isinstance(exc, SafetensorError)


class Adapter(abc.ABC):
    """One embedding stack. Use as a context manager: loads on enter, frees on exit."""

    name: ClassVar[str]
    summary: ClassVar[str]
    options: ClassVar[dict[str, Option]] = {}
    requires: ClassVar[tuple[str, ...]] = ()
    install_hint: ClassVar[str] = "pip install -e ."
    # whether `model` is a local path (the run's --model by default); False for a served model
    # name, which the adapter receives only from the spec's model= ("" otherwise)
    model_is_path: ClassVar[bool] = True
    # whether the run may reuse this adapter's vectors from the embedding cache: False where
    # the key cannot see what decides them (a server) or nothing is computed (a vectors file)
    cacheable: ClassVar[bool] = True
    # distributions whose versions describe() reports
    distributions: ClassVar[tuple[str, ...]] = ("torch", "transformers", "tokenizers")
    # whether the adapter can embed only the texts it holds (an exported vectors file): the
    # runner then skips the built-in retrieval set, whose texts no export holds
    fixed_texts: ClassVar[bool] = False

    @classmethod
    def all_options(cls) -> dict[str, Option]:
        """Every option this adapter takes: the common ones, then its own."""
        return {**COMMON_OPTIONS, **cls.options}

    def __init__(self, model: str | Path, *, label: str | None = None, **config: Any) -> None:
        self.model = str(model)
        self.label = label or self.name
        self.given = dict(config)  # the options as the user gave them, to rebuild a variant
        allowed = self.all_options()
        unknown = sorted(set(config) - set(allowed))
        if unknown:
            raise SpecError(
                f"adapter {self.name!r} has no option {unknown[0]!r}; "
                f"valid options: {', '.join(sorted(allowed)) or 'none'}, label"
            )
        self.config: dict[str, Any] = {k: opt.default for k, opt in allowed.items()}
        for key, raw in config.items():
            self.config[key] = allowed[key].coerce(self.name, key, raw)
        self._loaded = False
        self._held: list[tuple[Hashable, Any]] = []  # the shared models it holds, by key
        # take a model another adapter holds where the loading reads the same (shared())
        self.reuse_loaded = False
        self.load_seconds = 0.0
        self.embed_seconds = 0.0

    @classmethod
    def check_spec(cls, options: dict[str, str]) -> None:
        """Raise SpecError for a combination of options (as given, unparsed) that cannot work;
        AdapterSpec.parse calls it, so it fails before any model loads."""

    @classmethod
    def available(cls) -> tuple[bool, str]:
        """Whether the framework imports here, and the install step when it does not."""
        for module in cls.requires:
            # find_spec, not import: importing BCEmbedding reconfigures the root logger; for a
            # dotted name whose parent package is missing it raises ModuleNotFoundError
            try:
                found = importlib.util.find_spec(module) is not None
            except ModuleNotFoundError:
                found = False
            if not found:
                return False, f"no module named {module!r}; install with `{cls.install_hint}`"
        return True, ""

    def load(self) -> None:
        if self._loaded:
            return
        ok, why = self.available()
        if not ok:
            raise AdapterUnavailable(f"adapter {self.name!r} is unavailable: {why}")
        started = time.perf_counter()
        try:
            self._load_explained()
        except BaseException:
            self._release()  # what _load had taken from the shared models before it failed
            raise
        self.load_seconds = time.perf_counter() - started
        self._loaded = True

    def _load_explained(self) -> None:
        """_load, its failures turned into an exit-2 AdapterError (the user's model directory)
        or an exit-3 AdapterCrash (a bug or a framework failure)."""
        try:
            self._load()
        except ParityError:  # raised on purpose: it already says what to fix
            raise
        except Exception as exc:
            if not is_loading_error(exc):
                # our bug or a framework failure (RuntimeError, KeyError, ...): exit 3, traceback
                raise AdapterCrash(
                    f"adapter {self.label} crashed while loading: {type(exc).__name__}: {exc}"
                ) from exc
            # the model directory is the user's input: a bad one is fixable, so exit 2
            raise AdapterError(
                f"{self.label}: cannot load a model from {self.model!r} "
                f"({type(exc).__name__}: {exc}); check that --model points to a complete "
                "model directory this adapter can read"
            ) from exc

    def close(self) -> None:
        if self._loaded:
            self._close()
        self._release()
        self._loaded = False

    def on_cpu(self) -> bool:
        """Whether this adapter computes on the CPU (from its options, without loading): a run
        that does not is never remembered, its accelerator being unreadable before a load."""
        return str(self.config.get("device", "cpu")) == "cpu"

    def shared(self, factory: Callable[[], Any], *key: Hashable) -> Any:
        """For _load: `factory()`'s object (a framework's loaded model), released on close. An
        adapter with `reuse_loaded` set (diagnosis's rebuilt sides) takes instead the one an
        adapter of this class already holds for the same model files (paths, sizes, mtimes)
        and `key` (all else the loading reads: dtype, device, ...): it reads no weights again."""
        full = (type(self), self.model, model_stamp(self.model), *key)
        loaded = acquire(full, factory, reuse=self.reuse_loaded)
        self._held.append((full, loaded))
        return loaded

    def _release(self) -> None:
        for key, loaded in self._held:
            release(key, loaded)
        self._held = []

    def __enter__(self) -> Adapter:
        self.load()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed `texts` as a float32 (n, dim) array. Validates input and output."""
        texts = validate_texts(texts)
        self.load()
        if not texts:
            raise ParityInputError("no texts to embed")
        started = time.perf_counter()
        try:
            raw = self._embed(texts)
        except ParityError:  # raised on purpose: it already says what to fix
            raise
        except Exception as exc:
            # a crash inside the framework or our backend is not bad input: exit 3, traceback kept
            raise AdapterCrash(
                f"adapter {self.label} crashed while embedding: {type(exc).__name__}: {exc}"
            ) from exc
        self.embed_seconds += time.perf_counter() - started
        return self._validate_output(raw, len(texts))

    def _validate_output(self, raw: Any, n: int) -> np.ndarray:
        try:
            array = np.asarray(raw)
        except Exception as exc:
            raise AdapterError(f"{self.label}: output is not an array: {exc}") from exc
        if array.ndim != 2 or array.shape[0] != n or array.shape[1] == 0:
            raise AdapterError(
                f"{self.label}: expected output of shape ({n}, dim), got {array.shape}"
            )
        if not np.issubdtype(array.dtype, np.number):
            raise AdapterError(f"{self.label}: output dtype {array.dtype} is not numeric")
        # NaN/Inf rows are returned: they are findings (compare fails those texts, cause
        # non-finite), not adapter errors; only the shape and dtype make an output unusable
        return array.astype(np.float32, copy=False)

    def describe(self) -> dict[str, Any]:
        """The effective configuration: what this adapter really does to a text."""
        self.load()
        described: dict[str, Any] = {
            "adapter": self.name,
            "label": self.label,
            "model": self.model,
            "device": self.config["device"],
            "preprocessing": [],
            "tokenizer": None,
            "max_length": None,
            "pooling": None,
            "normalize": None,
            "dtype": None,
            "instruction": "",
        }
        described.update(self._describe())
        described["versions"] = library_versions(self.distributions)
        return described

    def tokenize(self, texts: Sequence[str]) -> list[list[str]] | None:
        """The token strings this adapter's tokenizer produces after its preprocessing, if known."""
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.label} {self.config}>"

    @abc.abstractmethod
    def _load(self) -> None:
        """Load the model (called once)."""

    def _close(self) -> None:
        """Free the model."""

    @abc.abstractmethod
    def _embed(self, texts: list[str]) -> Any:
        """Return one vector per text, in order."""

    @abc.abstractmethod
    def _describe(self) -> dict[str, Any]:
        """Backend-specific part of describe()."""


def token_strings(tokenizer: Any, texts: Sequence[str], max_length: int) -> list[list[str]]:
    """The token strings a Hugging Face tokenizer produces, truncated as the adapter truncates."""
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length)
    return [list(tokenizer.convert_ids_to_tokens(ids)) for ids in encoded["input_ids"]]


def validate_texts(texts: Any) -> list[str]:
    """A list of str, or ParityInputError naming the first bad index and the type found (or the
    lone surrogate that no tokenizer can take)."""
    if isinstance(texts, (str, bytes)) or not isinstance(texts, Sequence):
        raise ParityInputError(
            f"expected a sequence of strings, got {type(texts).__name__}; wrap a single text in a list"
        )
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            found = "null" if text is None else type(text).__name__
            raise ParityInputError(f"text #{index}: expected a string, got {found}")
        problem = unencodable(text)
        if problem:
            raise ParityInputError(f"text #{index}: {problem}")
    return list(texts)
