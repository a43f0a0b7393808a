"""The `parity_baseline` fixture's logic: check live adapters against a stored baseline.

Follows pytest-regressions: a missing baseline is written and the test fails once."""

from __future__ import annotations

import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from parity.adapters import AdapterSpec
from parity.baseline.create import build_manifest
from parity.baseline.store import load_baseline, write_baseline
from parity.compare import compare_pair, metric_lines
from parity.errors import BaselineError
from parity.metrics import Tolerance


def baseline_dir(test_file: Path, test_name: str, name: str | None = None) -> Path:
    """<test dir>/<test module>/<name or test name>, as pytest-regressions lays out its data."""
    leaf = re.sub(r"[^A-Za-z0-9._-]+", "_", name or test_name).strip("_") or "baseline"
    return test_file.parent / test_file.stem / leaf


def record(
    path: Path,
    adapters: dict[str, Any],
    texts: Sequence[str],
    tolerance: Tolerance,
    vectors: dict[str, np.ndarray] | None = None,
) -> Path | None:
    """Write the live adapters' vectors of `texts` (embedded now unless given) as the baseline
    at `path`."""
    specs = [AdapterSpec(a.name, a.given, label) for label, a in adapters.items()]
    if vectors is None:
        vectors = {label: a.embed(texts) for label, a in adapters.items()}
    configs = {label: a.describe() for label, a in adapters.items()}
    model = Path(next(iter(adapters.values())).model)
    manifest = build_manifest(specs, texts, model, configs, vectors, tolerance, None)
    return write_baseline(path, manifest, list(texts), vectors, force=True)


def check(
    path: Path, adapters: dict[str, Any], texts: Sequence[str], tolerance: Tolerance
) -> str | None:
    """None when every adapter reproduces its baseline vectors; else the failure message.

    On drift, today's vectors are left beside the baseline as `<name>.obtained/` for diffing."""
    baseline = load_baseline(path)
    if not baseline.same_texts(texts):
        raise BaselineError(
            f"{path}: recorded for other texts ({baseline.manifest['texts']['count']} texts) than "
            f"the {len(texts)} given; rerun with --parity-regen to record these"
        )
    lines: list[str] = []
    vectors: dict[str, np.ndarray] = {}
    for label, adapter in adapters.items():
        if label not in baseline.vectors:
            raise BaselineError(
                f"{path}: no vectors for adapter {label!r} (recorded: "
                f"{', '.join(baseline.vectors)}); rerun with --parity-regen to record it"
            )
        vectors[label] = adapter.embed(texts)
        pair = compare_pair(
            "baseline", baseline.vectors[label], label, vectors[label], texts, tolerance
        )
        if pair:
            continue
        worst = pair.worst(1)[0]
        lines.append(f"{label}: {pair.failures} of {pair.n} texts drifted from {path}")
        lines.append(f"  worst text: {worst.text!r}")
        lines += metric_lines(worst, tolerance)
    if not lines:
        return None
    env = baseline.environment_diff(Path(next(iter(adapters.values())).model))
    lines += [f"environment: {line}" for line in env["lines"]] or ["environment: unchanged"]
    obtained = path.with_name(path.name + ".obtained")
    shutil.rmtree(obtained, ignore_errors=True)
    record(obtained, adapters, texts, tolerance, vectors)
    lines.append(
        f"today's vectors are in {obtained}; if the change is intended, rerun with --parity-regen"
    )
    return "\n".join(lines)
