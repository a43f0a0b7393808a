"""What a baseline records about where its vectors came from, and how two records differ.

Hashes are sha256 hex digests: of each text (UTF-8), of the whole text set (the per-text
digests in order), of every model file, and of every file in the baseline directory.
"""

from __future__ import annotations

import platform
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from parity.adapters.base import library_versions
from parity.files import sha256_bytes, sha256_file, text_sha256

SCHEMA_VERSION = 1
KIND = "parity-baseline"
MANIFEST = "manifest.json"
CHECKSUMS = "SHA256SUMS"
TEXTS = "texts.jsonl"


def text_hashes(texts: Iterable[str]) -> list[str]:
    return [text_sha256(text) for text in texts]


def text_set_hash(hashes: Sequence[str]) -> str:
    """One digest for an ordered text set: a reordered or edited set gets another."""
    return sha256_bytes("\n".join(hashes).encode("ascii"))


def texts_sha256(texts: Iterable[str]) -> str:
    """text_set_hash of the texts themselves."""
    return text_set_hash(text_hashes(texts))


def model_files(model_path: Path) -> dict[str, str]:
    """sha256 of every file under the model directory, by relative POSIX path (hidden dirs skipped)."""
    files: dict[str, str] = {}
    for path in sorted(model_path.rglob("*")):
        relative = path.relative_to(model_path)
        if path.is_file() and not any(part.startswith(".") for part in relative.parts[:-1]):
            files[relative.as_posix()] = sha256_file(path)
    return files


def model_record(model_path: Path) -> dict[str, Any]:
    """What the model was and what its files hashed to; the bundled model is recorded as
    BUNDLED_REFERENCE (it resolves on any machine), any other as its absolute path."""
    from parity.modelinfo import is_bundled, model_reference

    return {
        "path": model_reference(model_path),
        "bundled": is_bundled(model_path),
        "files": model_files(model_path),
    }


def environment() -> dict[str, Any]:
    """Library versions (None when absent), python, and the platform."""
    env: dict[str, Any] = dict(library_versions())
    env["platform"] = platform.platform()
    env["machine"] = platform.machine()
    return env


def now_utc() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def environment_diff(
    old_env: Mapping[str, Any],
    new_env: Mapping[str, Any],
    old_files: Mapping[str, str],
    new_files: Mapping[str, str],
) -> dict[str, Any]:
    """Library versions and model files that differ, plus one readable line per difference."""
    libraries = {
        name: [old_env.get(name), new_env.get(name)]
        for name in sorted(set(old_env) | set(new_env))
        if old_env.get(name) != new_env.get(name)
    }
    changed = sorted(f for f in set(old_files) & set(new_files) if old_files[f] != new_files[f])
    added = sorted(set(new_files) - set(old_files))
    removed = sorted(set(old_files) - set(new_files))
    lines = [
        f"{name} {old or 'absent'} -> {new or 'absent'}" for name, (old, new) in libraries.items()
    ]
    lines += [
        f"model file hash changed: {f} ({old_files[f][:12]} -> {new_files[f][:12]})"
        for f in changed
    ]
    lines += [f"model file added: {f}" for f in added]
    lines += [f"model file removed: {f}" for f in removed]
    return {
        "libraries": libraries,
        "model_files": {"changed": changed, "added": added, "removed": removed},
        "lines": lines,
    }
