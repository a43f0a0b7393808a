"""Loaded models shared inside one process: an adapter built again with a setting its loading
does not read (diagnosis rebuilding a side with max_length=256 or strip=true) takes the model the
run already loaded instead of reading it from disk again.

Each entry is keyed by everything its loading reads (class, model files, dtype, device, ...) and
counts its holders; the last holder's release drops it, so a run that frees each adapter after
embedding still frees each model. Only an adapter that asks to reuse one gets an entry another
holds: two sides of one run each load their own, so a "same stack twice" check still compares
two loads."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

_ENTRIES: dict[Hashable, list[list[Any]]] = {}  # key -> [[object, holders], ...]


def acquire(key: Hashable, factory: Callable[[], Any], *, reuse: bool) -> Any:
    """With `reuse`, the object a holder already loaded under `key`; else (or when none is)
    a new one from `factory`. One more holder either way."""
    entries = _ENTRIES.get(key, [])
    if reuse and entries:
        entry = entries[0]
    else:
        entry = [factory(), 0]  # a factory that raises adds nothing
        _ENTRIES.setdefault(key, []).append(entry)
    entry[1] += 1
    return entry[0]


def release(key: Hashable, loaded: Any) -> None:
    """One holder of `loaded` fewer; the last one's release drops it."""
    entries = _ENTRIES.get(key, [])
    for entry in entries:
        if entry[0] is loaded:
            entry[1] -= 1
            if entry[1] <= 0:
                entries.remove(entry)
            break
    if not entries:
        _ENTRIES.pop(key, None)


def holders(key: Hashable) -> int:
    """How many adapters hold an object loaded under `key` now (0: none is loaded)."""
    return sum(int(entry[1]) for entry in _ENTRIES.get(key, []))
