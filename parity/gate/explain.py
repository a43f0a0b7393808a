"""Why an adapter drifted from its baseline: a setting, a preprocessing step, or the environment.

The baseline side is played by its recorded spec rebuilt today (the current adapter itself when
the settings are unchanged or the recorded spec cannot be rebuilt) holding the recorded vectors. Diagnosis then probes as for any pair,
without a noise floor (the live adapter cannot reproduce a baseline made elsewhere). Texts nothing
explains are put down to the environment diff: model files, then library versions, then the
machine.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from fnmatch import fnmatch
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from parity.adapters import Adapter, AdapterSpec
from parity.compare import PairResult, compare_pair
from parity.diagnose import INFERRED, MEASURED, Cause, Diagnosis, Side, diagnose_pair
from parity.diagnose.causes import within
from parity.diagnose.probes import STAGE_OF
from parity.gate.result import GateResult
from parity.metrics import Tolerance
from parity.runner import RunResult

ACCEPT = "if the change is intended, record it with `parity gate --update`"

# Files that change what a model computes: weights, tokenizer, and its configuration. A README,
# .gitattributes or model card changing accounts for nothing.
MODEL_FILE_SUFFIXES = (".safetensors", ".bin", ".onnx", ".pt", ".pth", ".gguf", ".h5", ".msgpack")
MODEL_FILE_NAMES = (
    "modules.json",
    "sentence_bert_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "merges.txt",
    "spiece.model",
    "sentencepiece.bpe.model",
)
MODEL_FILE_PATTERNS = (
    "config*.json",
    "tokenizer*",
    "vocab*",
    "*.model",
    "1_Pooling/*",
    "*Dense*/*",
)


def is_model_file(path: str) -> bool:
    """Whether a file in the model folder can change the vectors (weights, tokenizer, config)."""
    pure = PurePosixPath(path)
    if pure.suffix in MODEL_FILE_SUFFIXES or pure.name in MODEL_FILE_NAMES:
        return True
    return any(pure.match(p) or fnmatch(pure.name, p) for p in MODEL_FILE_PATTERNS)


def _adapter_libraries(env: dict[str, Any], configs: list[dict[str, Any]]) -> dict[str, Any]:
    """Library changes among the distributions the adapters report using (describe()["versions"],
    python excepted): a numpy or python upgrade alone says nothing about these vectors."""
    used = {name for config in configs for name in config.get("versions", {})} - {"python"}
    return {k: v for k, v in env["libraries"].items() if k in used}


def model_file_changes(files: dict[str, list[str]]) -> list[str]:
    """The weight/tokenizer/config files that changed, were added or removed: "name (kind)"."""
    kinds = ("changed", "added", "removed")
    return [f"{f} ({kind})" for kind in kinds for f in files[kind] if is_model_file(f)]


def environment_cause(
    indices: list[int], env: dict[str, Any], configs: list[dict[str, Any]] | None = None
) -> Cause:
    """The environment change that best accounts for texts no setting or transform explains:
    an inference by elimination, never a measurement (evidence "inferred")."""
    files = env["model_files"]
    named = model_file_changes(files)
    ignored = [f for kind in ("changed", "added", "removed") for f in files[kind]]
    ignored = [f for f in ignored if not is_model_file(f)]
    libraries = _adapter_libraries(env, configs or [])
    unexplained = "no setting or preprocessing probe reproduced these texts"
    if named:
        return Cause(
            "model-files",
            STAGE_OF["model-files"],
            "the model files differ from the baseline's: " + ", ".join(named) + ".",
            len(indices),
            f"{ACCEPT}; otherwise restore the model files the baseline was made with",
            indices=indices,
            evidence="inferred",
            basis=f"{unexplained}; these weight/tokenizer/config files changed since the "
            f"baseline: {', '.join(named)}",
        )
    if libraries:
        moved = ", ".join(f"{k} {old} -> {new}" for k, (old, new) in libraries.items())
        return Cause(
            "library-version",
            STAGE_OF["library-version"],
            f"same settings and model files, but libraries this adapter uses changed: {moved}.",
            len(indices),
            f"read their changelogs for preprocessing, dtype or pooling changes and pin the old "
            f"versions; {ACCEPT}",
            indices=indices,
            evidence="inferred",
            basis=f"{unexplained}; no weight/tokenizer/config file changed; {moved}",
        )
    others = "; ".join(env["lines"][:4]) or "nothing recorded changed"
    return Cause(
        "environment",
        STAGE_OF["environment"],
        "same settings, model files and adapter libraries, yet other vectors: the hardware, "
        "thread count or a nondeterministic kernel changed.",
        len(indices),
        "raise the tolerance to this pair's min_tolerance, or make the baseline on the machine "
        "that gates",
        indices=indices,
        evidence="inferred",
        basis=f"{unexplained}; no weight/tokenizer/config file and no library the adapter uses "
        f"changed (other differences: {others}"
        + (f"; not model files: {', '.join(ignored)}" if ignored else "")
        + ")",
    )


def explain_drift(
    gate: GateResult, pair: PairResult, model_path: Path, progress: Callable[[str], None]
) -> None:
    """Fill pair.causes and pair.diagnosis for one drifted adapter."""
    label, base_label = pair.b, gate.matched[pair.b]
    run = gate.result
    entry = gate.baseline.entry(base_label)
    current_spec, current = run.specs[label], run.adapters[label]
    base_vectors = gate.baseline.vectors[base_label]
    failing = pair.failing_indices()
    base_spec, replica, rebuild_failed = _recorded_side(
        entry["spec"], pair.a, current_spec, current, model_path
    )
    try:
        reproduced: list[int] = []
        if replica is not current:
            reproduced, rebuild_failed = _reproduced(replica, run, failing, base_vectors)
            if rebuild_failed is not None:  # it cannot run today: the current adapter stands in
                replica.close()
                replica = current
        kept = set(reproduced)
        moved = [i for i in failing if i not in kept]
        causes: list[Cause] = []
        details: list[dict[str, Any]] = []
        base = Side(pair.a, base_spec, replica, base_vectors, entry["describe"], fixable=False)
        now = Side(label, current_spec, current, run.embeddings[label], run.configs[label])
        configs = [entry["describe"], run.configs[label]]
        for rows, frozen in ((reproduced, False), (moved, True)):
            if not rows:
                continue
            found = _diagnose_rows(
                rows,
                base,
                now,
                run.texts,
                str(model_path),
                run.comparison.tolerance,
                progress,
                frozen=frozen,
            )
            details.append(
                {"texts": len(rows), "baseline_reproduced": not frozen, **found.as_dict()}
            )
            causes += _gate_causes(found, gate.env, configs, frozen=frozen)
    finally:
        if replica is not current:
            replica.close()
    causes.sort(key=lambda c: -c.explained)
    pair.causes = [c.as_dict() for c in causes]
    pair.diagnosis = {
        **_first_stage(details, causes),
        "baseline_reproduced": len(reproduced),
        **({"baseline_rebuild_skipped": rebuild_failed} if rebuild_failed else {}),
        "parts": details,
        "environment_diff": gate.env["lines"],
    }


def _first_stage(details: list[dict[str, Any]], causes: list[Cause]) -> dict[str, Any]:
    """A stage a part's walk measured, else the top cause's stage, marked as inferred."""
    for part in details:
        if part["first_stage"] and part["first_stage_evidence"] == MEASURED:
            return {"first_stage": part["first_stage"], "first_stage_evidence": MEASURED}
    stage = causes[0].stage if causes else None
    return {"first_stage": stage, "first_stage_evidence": INFERRED if stage else None}


def _recorded_side(
    recorded: str, label: str, current_spec: AdapterSpec, current: Adapter, model_path: Path
) -> tuple[AdapterSpec, Adapter, str | None]:
    """The baseline's side: its recorded spec, the adapter that plays it (the current one when
    the settings are unchanged) and why it could not be rebuilt. A recorded spec that is invalid
    today (an option since removed) or fails to build costs the rebuild probe, not the finding:
    the current adapter stands in, and every text is probed against the recorded vectors."""
    spec = AdapterSpec(current_spec.name, {}, label)  # stands in if the recorded one is invalid
    try:
        parsed = AdapterSpec.parse(recorded)
        spec = AdapterSpec(parsed.name, parsed.options, label)
        if (spec.name, spec.options) == (current_spec.name, current_spec.options):
            return spec, current, None
        return spec, spec.build(model_path), None
    except Exception as exc:  # a probe's failure costs the probe, never the finding
        return spec, current, f"{type(exc).__name__}: {exc}"


def _reproduced(
    replica: Adapter, run: RunResult, failing: list[int], base_vectors: np.ndarray
) -> tuple[list[int], str | None]:
    """The failing texts on which the recorded spec, run today, still gives the recorded vectors.
    If that rebuild crashes, none are: every text is probed against the recorded vectors only,
    and the reason is returned to be listed (the drift finding must survive)."""
    try:
        again = replica.embed([run.texts[i] for i in failing])
    except Exception as exc:  # a probe's crash costs the probe, never the finding
        return [], f"{type(exc).__name__}: {exc}"
    ok = within(again, base_vectors[failing], run.comparison.tolerance)
    return [i for i, good in zip(failing, ok, strict=True) if good], None


def _gate_causes(
    found: Diagnosis, env: dict[str, Any], configs: list[dict[str, Any]], *, frozen: bool
) -> list[Cause]:
    """A pair diagnosis's causes, read as drift: what no probe explained, where the recorded
    settings no longer reproduce the baseline, is put down to the environment (inferred)."""
    causes = []
    for cause in found.causes:
        if cause.cause == "unknown":
            causes.append(environment_cause(cause.indices, env, configs) if frozen else cause)
            continue
        cause.fix += f"; {ACCEPT}"
        if frozen:
            cause.basis += "; " + _environment_inference(env, configs)
        causes.append(cause)
    return causes


def relevant_changes(env: dict[str, Any], configs: list[dict[str, Any]]) -> list[str]:
    """The environment changes that can move these vectors: weight/tokenizer/config files and
    the libraries the adapters use (a README, numpy or python changing does not count)."""
    libraries = _adapter_libraries(env, configs)
    return model_file_changes(env["model_files"]) + [
        f"{k} {old} -> {new}" for k, (old, new) in libraries.items()
    ]


def _environment_inference(env: dict[str, Any], configs: list[dict[str, Any]]) -> str:
    """Why the environment is blamed for a measured setting's texts, as the inference it is."""
    changed = relevant_changes(env, configs)
    where = (
        f"of what changed, these can move the vectors: {', '.join(changed)}"
        if changed
        else "no weight/tokenizer/config file and no library the adapter uses changed"
    )
    return (
        "inferred: the recorded settings, rebuilt today, no longer reproduce the baseline, so "
        f"something outside the settings moved too ({where})"
    )


def _diagnose_rows(
    rows: list[int],
    base: Side,
    current: Side,
    texts: list[str],
    model: str,
    tolerance: Tolerance,
    progress: Callable[[str], None],
    *,
    frozen: bool,
) -> Diagnosis:
    """diagnose_pair on a subset of texts, with indices mapped back to the full text list."""
    sub_texts = [texts[i] for i in rows]
    base_sub = dataclasses.replace(base, vectors=base.vectors[rows])
    current_sub = dataclasses.replace(current, vectors=current.vectors[rows])
    sub_pair = compare_pair(
        base.label, base_sub.vectors, current.label, current_sub.vectors, sub_texts, tolerance
    )
    found = diagnose_pair(
        base_sub, current_sub, sub_texts, sub_pair, model, tolerance, progress, frozen_a=frozen
    )
    for cause in found.causes:
        cause.indices = [rows[j] for j in cause.indices]
    return found
