"""Adapter registry and `NAME[:key=value,...]` spec parsing."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from parity.adapters.base import Adapter
from parity.adapters.registry import REGISTRY
from parity.errors import SpecError

# keys every spec takes, whatever its adapter: parse and build handle them, not the adapter
SPEC_KEYS = ("label", "model")


def register(cls: type[Adapter]) -> type[Adapter]:
    """Add a third-party adapter class to the registry (usable as a decorator)."""
    REGISTRY[cls.name] = cls
    return cls


@dataclass(frozen=True)
class AdapterSpec:
    """A parsed `NAME[:key=value,...]` spec; `label` tells two specs of one adapter apart."""

    name: str
    options: dict[str, str] = field(default_factory=dict)
    label: str = ""

    @classmethod
    def parse(cls, spec: str) -> AdapterSpec:
        name, _, rest = spec.lstrip().partition(":")
        name = name.strip()
        if name not in REGISTRY:
            raise SpecError(
                f"unknown adapter {name!r} in spec {spec!r}; choose from {', '.join(REGISTRY)}"
            )
        options: dict[str, str] = {}
        label = ""
        # values keep their whitespace: an instruction like "query: " ends with a space
        for part in filter(lambda p: p.strip(), rest.split(",")):
            key, sep, value = part.partition("=")
            key = key.strip()
            if not sep or not key:
                raise SpecError(f"adapter spec {spec!r}: expected key=value, got {part!r}")
            if key == "label":
                label = value.strip()
                continue
            if key == "model":
                if not value.strip():
                    raise SpecError(f"adapter spec {spec!r}: model= needs a value")
                options[key] = value.strip()
                continue
            if key not in ("instruction", "prompt", "query_instruction", "text_instruction"):
                value = value.strip()
            allowed = REGISTRY[name].all_options()
            if key not in allowed:
                raise SpecError(
                    f"adapter {name!r} has no option {key!r}; valid options: "
                    f"{', '.join(sorted(allowed))}, {', '.join(SPEC_KEYS)}"
                )
            # checked now, so a bad value fails before any model loads, not when its adapter does
            allowed[key].coerce(name, key, value)
            options[key] = value
        _require(name, options)
        REGISTRY[name].check_spec(options)
        return cls(name, options, label or cls._default_label(name, options))

    @staticmethod
    def _default_label(name: str, options: dict[str, str]) -> str:
        if not options:
            return name
        return name + ":" + ",".join(f"{k}={v}" for k, v in options.items())

    @property
    def model(self) -> str | None:
        """The model this spec names with model=, or None to use the run's."""
        return self.options.get("model")

    def build(self, model: str | Path) -> Adapter:
        """The adapter, loading this spec's model= if given, else `model` (the run's --model);
        an adapter that does not take the run's model (an HTTP server) gets "" instead."""
        cls = REGISTRY[self.name]
        options = dict(self.options)
        own = options.pop("model", None)
        if own is not None:
            target: str | Path = str(Path(own).expanduser()) if cls.model_is_path else own
        else:
            target = model if cls.model_is_path else ""
        return cls(target, label=self.label, **options)

    def as_string(self) -> str:
        parts = [f"{k}={v}" for k, v in self.options.items()]
        if self.label != self._default_label(self.name, self.options):
            parts.append(f"label={self.label}")
        return self.name + (":" + ",".join(parts) if parts else "")


def _require(name: str, options: dict[str, str]) -> None:
    """SpecError for the first required option the spec lacks, before any model loads."""
    for key, option in REGISTRY[name].all_options().items():
        if option.required and not options.get(key):
            raise SpecError(f"adapter {name!r} needs {key}=, {option.help}")


def parse_specs(specs: list[str]) -> list[AdapterSpec]:
    """Parse specs (names, keys and every option value) and make sure their labels are unique."""
    parsed = [AdapterSpec.parse(s) for s in specs]
    seen: set[str] = set()
    for spec in parsed:
        if spec.label in seen:
            raise SpecError(
                f"two adapters are labelled {spec.label!r}; add label=NAME to tell them apart"
            )
        seen.add(spec.label)
    return parsed


__all__ = ["REGISTRY", "SPEC_KEYS", "Adapter", "AdapterSpec", "parse_specs", "register"]
