"""The adapter registry: built-in adapters by module path, others from the `parity.adapters`
entry-point group, each imported only when its name is used."""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Iterator, MutableMapping

from parity.adapters.base import Adapter
from parity.errors import AdapterUnavailable

ENTRY_POINT_GROUP = "parity.adapters"

# name -> "module:Class"; a backend module imports its framework only when the adapter loads
BUILTIN: dict[str, str] = {
    "sentence-transformers": "parity.adapters.sbert:SentenceTransformersAdapter",
    "custom": "parity.adapters.custom:CustomAdapter",
    "bcembedding": "parity.adapters.bcembedding:BCEmbeddingAdapter",
    "langchain": "parity.adapters.langchain:LangChainAdapter",
    "onnx": "parity.adapters.onnx:OnnxAdapter",
    "fastembed": "parity.adapters.fastembed:FastEmbedAdapter",
    "llamaindex": "parity.adapters.llamaindex:LlamaIndexAdapter",
    "http": "parity.adapters.http:HttpAdapter",
    "vectors": "parity.adapters.vectors:VectorsAdapter",
}


class PluginError(AdapterUnavailable):
    """An adapter from another package's entry point could not be imported or is not an Adapter."""


def _import(target: str) -> object:
    module, _, attribute = target.partition(":")
    loaded: object = importlib.import_module(module)
    for part in attribute.split("."):
        loaded = getattr(loaded, part)
    return loaded


class Registry(MutableMapping[str, type[Adapter]]):
    """Adapter classes by name: built-ins first, then installed plugins (found lazily).

    A plugin that fails to import breaks only the specs that name it, with a message naming its
    entry point and distribution; every other adapter stays usable."""

    def __init__(self, builtin: dict[str, str]) -> None:
        self._targets = dict(builtin)
        self._classes: dict[str, type[Adapter]] = {}
        self._origin: dict[str, str] = {}  # name -> distribution, for plugins
        self._scanned = False

    def _scan(self) -> None:
        if self._scanned:
            return
        self._scanned = True
        for point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if point.name in self._targets or point.name in self._classes:
                continue  # a plugin never shadows a built-in or a registered class
            self._targets[point.name] = point.value
            dist = getattr(point, "dist", None)
            self._origin[point.name] = dist.name if dist is not None else "an installed package"

    def __getitem__(self, name: str) -> type[Adapter]:
        if name in self._classes:
            return self._classes[name]
        if name not in self._targets:
            self._scan()
        target = self._targets[name]  # KeyError: unknown name
        try:
            cls = _import(target)
        except Exception as exc:
            if name not in self._origin:
                raise  # a built-in that does not import is our bug: exit 3
            raise PluginError(self._plugin_problem(name, f"{type(exc).__name__}: {exc}")) from exc
        if not (isinstance(cls, type) and issubclass(cls, Adapter)):
            raise PluginError(self._plugin_problem(name, f"{target} is not an Adapter subclass"))
        self._classes[name] = cls
        return cls

    def _plugin_problem(self, name: str, why: str) -> str:
        return (
            f"adapter plugin {name!r} (entry point {self._targets[name]!r} in group "
            f"{ENTRY_POINT_GROUP!r}, from {self._origin[name]}) cannot be used: {why}; "
            f"fix or reinstall {self._origin[name]}, or uninstall it"
        )

    def __setitem__(self, name: str, cls: type[Adapter]) -> None:
        self._classes[name] = cls

    def __delitem__(self, name: str) -> None:
        found = name in self._classes or name in self._targets
        self._classes.pop(name, None)
        self._targets.pop(name, None)
        if not found:
            raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        self._scan()
        yield from dict.fromkeys([*self._targets, *self._classes])

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __contains__(self, name: object) -> bool:
        if name in self._classes or name in self._targets:
            return True
        self._scan()
        return name in self._targets

    def is_plugin(self, name: str) -> bool:
        """Whether `name` comes from another package's entry point."""
        self._scan()
        return name in self._origin


REGISTRY = Registry(BUILTIN)
