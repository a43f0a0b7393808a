"""Loaded models shared inside one process: an adapter built again with a setting that does not
change its weights (diagnosis rebuilding a side with max_length=256 or strip=true) takes the
model the run already loaded instead of reading it from disk again.

Each entry is keyed by everything its loading reads (class, model path, dtype, device, ...) and
counts its holders; the last holder's release drops it, so a run that frees each adapter after
embedding still frees each model."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

_ENTRIES: dict[Hashable, list[Any]] = {}  # key -> [object, holders]


def acquire(key: Hashable, factory: Callable[[], Any]) -> Any:
    """The object loaded under `key`, made by `factory` when nobody holds one; one more holder."""
    entry = _ENTRIES.get(key)
    if entry is None:
        entry = _ENTRIES[key] = [factory(), 0]  # a factory that raises leaves no entry
    entry[1] += 1
    return entry[0]


def release(key: Hashable) -> None:
    """One holder fewer; the last one's release drops the object."""
    entry = _ENTRIES.get(key)
    if entry is None:
        return
    entry[1] -= 1
    if entry[1] <= 0:
        del _ENTRIES[key]


def holders(key: Hashable) -> int:
    """How many adapters hold the object loaded under `key` now (0: none is loaded)."""
    entry = _ENTRIES.get(key)
    return 0 if entry is None else int(entry[1])
