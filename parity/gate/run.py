"""The pre-release gate: re-embed a baseline's texts today and say what moved, why, and what it
does to ranking.

Each adapter is compared with its own baseline vectors (these pairs gate), and the adapters with
each other (reported; they gate only when a pair that passed at baseline time fails now).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path

import numpy as np

from parity.adapters import AdapterSpec, parse_specs
from parity.baseline import Baseline, build_manifest, load_baseline
from parity.baseline.manifest import texts_sha256
from parity.baseline.store import write_baseline
from parity.baseline.swap import baseline_lock
from parity.compare import BaselineLink, Comparison, PairResult, PairRole, compare_all, compare_pair
from parity.diagnose import cause_label
from parity.errors import BaselineError, ModelNotFound, ParityInputError
from parity.gate.explain import explain_drift
from parity.gate.result import BASELINE_PREFIX, DEFAULT_MAX_NDCG_DROP, GateResult
from parity.metrics import Tolerance
from parity.retrieval import (
    RetrievalSet,
    load_retrieval_set,
    ndcg_change,
    ndcg_drop_exceeds,
    pair_impact,
)
from parity.runner import Embedded, RunResult, embed_specs, token_exercise


def match_adapters(specs: Sequence[AdapterSpec], baseline: Baseline) -> dict[str, str]:
    """Pair each current adapter with a baseline adapter: same label, else the only one of its name."""
    recorded = [entry["label"] for entry in baseline.adapters]
    names = {entry["label"]: entry["name"] for entry in baseline.adapters}
    matched: dict[str, str] = {}
    for spec in specs:
        if spec.label in names:
            matched[spec.label] = spec.label
            continue
        same_name = [label for label in recorded if names[label] == spec.name]
        if len(same_name) != 1:
            why = (
                f"none of adapter {spec.name!r}"
                if not same_name
                else f"several of adapter {spec.name!r}: " + ", ".join(same_name)
            )
            raise BaselineError(
                f"{baseline.path}: no baseline for adapter {spec.label!r} (recorded {why}; all "
                f"recorded: {', '.join(recorded)}); give label=NAME to pick one, or record it "
                "with `parity baseline create --force`"
            )
        matched[spec.label] = same_name[0]
    return matched


def gate_specs(
    spec_strings: Sequence[str], baseline: Baseline
) -> tuple[list[AdapterSpec], dict[str, str], dict[str, str]]:
    """The adapters to gate: those given, and every other recorded one as it was recorded, in
    the baseline's order.

    Returns the specs, current label -> baseline label, and baseline label -> the given spec
    for each recorded adapter a given spec replaced with other settings."""
    given = parse_specs(list(spec_strings))
    matched = match_adapters(given, baseline)
    rest = parse_specs([a["spec"] for a in baseline.adapters if a["label"] not in matched.values()])
    matched.update(match_adapters(rest, baseline))
    order = [entry["label"] for entry in baseline.adapters]  # pairs read as they were recorded
    specs = sorted(given + rest, key=lambda spec: order.index(matched[spec.label]))
    overridden = {
        matched[spec.label]: spec.as_string()
        for spec in given
        if spec.as_string() != baseline.entry(matched[spec.label])["spec"]
    }
    return specs, matched, overridden


def resolve_baseline_model(baseline: Baseline, model: str | Path | None) -> Path:
    """--model if given, else the recorded model (the bundled one resolves on any machine)."""
    from parity.modelinfo import BUNDLED_REFERENCE, bundled_model_path, resolve_model

    if model is not None:
        return resolve_model(model)
    record = baseline.manifest["model"]
    if record.get("bundled") or record.get("path") == BUNDLED_REFERENCE:
        return bundled_model_path()
    path = Path(record.get("path", ""))
    if not path.is_dir():
        raise ModelNotFound(
            f"the baseline's model {path} is not on this machine; pass --model PATH"
        )
    return path


def _retrieval_set(baseline: Baseline) -> tuple[RetrievalSet | None, str | None]:
    """The built-in retrieval set if the baseline recorded this very set, else why not."""
    recorded = baseline.manifest.get("retrieval")
    if not recorded or not baseline.retrieval_vectors:
        return None, "the baseline has no retrieval vectors; recreate it to gate on retrieval"
    rset = load_retrieval_set()
    if texts_sha256(rset.all_texts()) != recorded.get("sha256"):
        return None, (
            f"the baseline recorded retrieval set {recorded.get('name')} v{recorded.get('version')}, "
            f"this parity ships v{rset.version}; retrieval not compared"
        )
    return rset, None


def run_gate(
    baseline_dir: str | Path,
    *,
    spec_strings: Sequence[str] = (),
    model: str | Path | None = None,
    tol: Sequence[str] | None = None,
    texts: Sequence[str] | None = None,
    max_ndcg_drop: float = DEFAULT_MAX_NDCG_DROP,
    update: bool = False,
    diagnose: bool = True,
    progress: Callable[[str], None] = lambda message: None,
) -> GateResult:
    """Check today's vectors against a baseline; with `update`, record today's as the new one
    (holding the baseline's lock throughout, so a second update is refused).

    `tol` are `--tol` strings applied over the tolerances the baseline recorded."""
    if not max_ndcg_drop >= 0 or max_ndcg_drop == float("inf"):
        raise ParityInputError(f"--max-ndcg-drop must be a finite number >= 0, got {max_ndcg_drop}")
    with baseline_lock(Path(baseline_dir)) if update else nullcontext():
        return _run_gate(
            baseline_dir,
            spec_strings=spec_strings,
            model=model,
            tol=tol,
            texts=texts,
            max_ndcg_drop=max_ndcg_drop,
            update=update,
            diagnose=diagnose,
            progress=progress,
        )


def _run_gate(
    baseline_dir: str | Path,
    *,
    spec_strings: Sequence[str],
    model: str | Path | None,
    tol: Sequence[str] | None,
    texts: Sequence[str] | None,
    max_ndcg_drop: float,
    update: bool,
    diagnose: bool,
    progress: Callable[[str], None],
) -> GateResult:
    baseline = _load(baseline_dir, texts, progress)
    specs, matched, overridden = gate_specs(spec_strings, baseline)
    model_path = resolve_baseline_model(baseline, model)
    tolerance = Tolerance.parse(tol, base=Tolerance.from_dict(baseline.manifest.get("tolerance")))
    rset, retrieval_note = _retrieval_set(baseline)
    # an update records today's retrieval set even when the baseline's was another version
    recorded_rset = rset if rset is not None or not update else load_retrieval_set()
    embedded = embed_specs(
        specs, baseline.texts, model_path, progress, keep_adapters=diagnose, retrieval=recorded_rset
    )
    try:
        _check_dims(baseline, embedded.embeddings)
        gate = _compare(
            baseline, specs, matched, embedded, model_path, tolerance, max_ndcg_drop, retrieval_note
        )
        gate.overridden = overridden
        if rset is not None:
            _attach_retrieval(gate, rset, embedded.retrieval)
        if diagnose and gate.drifted:
            for pair in gate.drift_pairs:
                if not pair:
                    progress(f"diagnosing drift of {pair.b} ({pair.failures} texts)")
                    explain_drift(gate, pair, model_path, progress)
    finally:
        for adapter in embedded.adapters.values():
            adapter.close()
    if update:
        _record(gate, specs, model_path, embedded, tolerance, recorded_rset)
    return gate


def _record(
    gate: GateResult,
    specs: list[AdapterSpec],
    model_path: Path,
    embedded: Embedded,
    tolerance: Tolerance,
    rset: RetrievalSet | None,
) -> None:
    """--update: today's vectors become the baseline (the old one is kept as DIR.prev)."""
    texts, vectors = gate.baseline.texts, embedded.embeddings
    manifest = build_manifest(
        specs,
        texts,
        model_path,
        embedded.configs,
        vectors,
        tolerance,
        rset,
        token_exercise(embedded.tokens),
    )
    gate.previous = write_baseline(
        gate.baseline.path, manifest, list(texts), vectors, embedded.retrieval, force=True
    )
    gate.updated = gate.baseline.path


def _load(
    baseline_dir: str | Path, texts: Sequence[str] | None, progress: Callable[[str], None]
) -> Baseline:
    """The baseline, refused when --texts names another text set."""
    baseline = load_baseline(baseline_dir)
    progress(
        f"baseline {baseline.path}: {len(baseline.texts)} texts, created {baseline.manifest['created']}"
    )
    # the gate exists to catch what a cache key may not see (a driver, a kernel, a server)
    progress("embedding every text for real: the gate never reads the embedding cache")
    if texts is not None and not baseline.same_texts(texts):
        raise BaselineError(
            f"{baseline.path}: made for a different text set ({baseline.manifest['texts']['count']} "
            f"texts) than the {len(texts)} given; gate on the baseline's own texts (omit --texts)"
        )
    return baseline


def _check_dims(baseline: Baseline, vectors: dict[str, np.ndarray]) -> None:
    for label, array in vectors.items():
        if array.shape[1] != baseline.dim:
            raise BaselineError(
                f"{baseline.path}: embedding dimension {array.shape[1]} from {label}, the "
                f"baseline has {baseline.dim}; is --model the model the baseline was made with?"
            )


def _compare(
    baseline: Baseline,
    specs: list[AdapterSpec],
    matched: dict[str, str],
    embedded: Embedded,
    model_path: Path,
    tolerance: Tolerance,
    max_ndcg_drop: float,
    retrieval_note: str | None,
) -> GateResult:
    """Each adapter against its baseline vectors, and the adapters with each other."""
    corpus, vectors = baseline.texts, embedded.embeddings
    pairs = _drift_pairs(baseline, matched, vectors, corpus, tolerance)
    exercised = token_exercise(embedded.tokens)
    cross = compare_all(vectors, corpus, tolerance, embedded.configs, exercised).pairs
    for pair in cross:
        pair.role = PairRole.CROSS
    result = RunResult(
        str(model_path),
        list(corpus),
        vectors,
        embedded.configs,
        {s.label: s for s in specs},
        Comparison(pairs + cross, tolerance),
        embedded.timings,
        embedded.adapters,
        tokens=embedded.tokens,
    )
    env = baseline.environment_diff(model_path)
    gate = GateResult(baseline, result, matched, env, max_ndcg_drop, retrieval_note=retrieval_note)
    gate.newly_failing = _newly_failing(baseline, matched, cross)
    return gate


def _drift_pairs(
    baseline: Baseline,
    matched: dict[str, str],
    vectors: dict[str, np.ndarray],
    texts: list[str],
    tolerance: Tolerance,
) -> list[PairResult]:
    pairs = []
    for label, base_label in matched.items():
        pair = compare_pair(
            BASELINE_PREFIX + base_label,
            baseline.vectors[base_label],
            label,
            vectors[label],
            texts,
            tolerance,
        )
        pair.role = PairRole.BASELINE
        pair.link = BaselineLink(base_label, baseline.entry(base_label)["describe"])
        pairs.append(pair)
    return pairs


def _attach_retrieval(
    gate: GateResult, rset: RetrievalSet, retrieval_vectors: dict[str, np.ndarray]
) -> None:
    for pair in gate.drift_pairs:
        base = gate.baseline.retrieval_vectors[gate.matched[pair.b]]
        pair.retrieval = pair_impact(rset, base, retrieval_vectors[pair.b])
        change = ndcg_change(pair.retrieval)
        if change is not None:
            gate.ndcg_changes[pair.b] = change
        if ndcg_drop_exceeds(pair.retrieval, gate.max_ndcg_drop):
            gate.ndcg_failures.append(pair.b)
    for pair in gate.cross_pairs:
        pair.retrieval = pair_impact(rset, retrieval_vectors[pair.a], retrieval_vectors[pair.b])


def _newly_failing(
    baseline: Baseline, matched: dict[str, str], cross: list[PairResult]
) -> list[str]:
    """Cross pairs that passed when the baseline was made and fail now."""
    before = {frozenset((p["a"], p["b"])): p for p in baseline.manifest.get("cross_pairs", [])}
    newly = []
    for pair in cross:
        recorded = before.get(frozenset((matched[pair.a], matched[pair.b])))
        if recorded is not None:
            pair.link = BaselineLink(
                at_baseline={"failures": recorded["failures"], "n": recorded["n"]}
            )
            if recorded["passed"] and not pair:
                newly.append(f"{pair.a} vs {pair.b}")
    return newly


def verdict_line(gate: GateResult, out: str | None) -> str:
    """One line for the terminal and CI logs."""
    where = f"; report in {out}" if out else ""
    n = len(gate.baseline.texts)
    if gate.passed:
        worst = max((p.stats()["max_abs"].max for p in gate.drift_pairs), default=0.0)
        line = (
            f"parity gate: PASS: {len(gate.drift_pairs)} adapter(s) match {gate.baseline.path} "
            f"on {n} texts (worst max_abs {worst:.2g})"
        )
    else:
        parts = []
        for pair in gate.drift_pairs:
            if not pair:
                causes = ", ".join(map(cause_label, pair.causes)) or "not diagnosed"
                parts.append(f"{pair.b} drifted ({pair.failures}/{pair.n} texts; {causes})")
        parts += [
            f"{label}: nDCG@10 dropped {-gate.ndcg_changes[label]:.3g} (more than "
            f"{gate.max_ndcg_drop:g})"
            for label in gate.ndcg_failures
        ]
        parts += [f"{name} fails, passed at baseline" for name in gate.newly_failing]
        line = "parity gate: FAIL: " + "; ".join(parts)
    gains = gate.ndcg_gains
    if gains:
        line += "; nDCG@10 rose (not a failure): " + ", ".join(
            f"{label} +{gain:.3g}" for label, gain in gains.items()
        )
    if gate.overridden:
        line += "; overridden: " + ", ".join(
            f"{recorded} as {spec}" for recorded, spec in gate.overridden.items()
        )
        rest = len(gate.drift_pairs) - len(gate.overridden)
        line += f" (the other {rest} as recorded)" if rest else ""
    if gate.env["lines"]:
        shown = gate.env["lines"][:4]
        more = len(gate.env["lines"]) - len(shown)
        line += "; environment: " + ", ".join(shown) + (f" (+{more} more)" if more else "")
    if gate.updated:
        line += f"; baseline updated, previous kept in {gate.previous or 'nowhere (none existed)'}"
    return line + where
