"""What each `parity` command does (cmd_*), and how a run becomes summary.json, report.md and
its verdict line."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from parity.cli.outcome import EXIT_OK, WarningLog, exit_code

if TYPE_CHECKING:
    from parity.runner import RunResult


def _load_texts(path: str | None) -> list[str]:
    from parity.texts import builtin_corpus, load_texts

    return load_texts(path) if path else builtin_corpus()


def _retrieval_set() -> Any:
    from parity.retrieval import load_retrieval_set

    return load_retrieval_set()


def cmd_list_adapters(args: argparse.Namespace, log: WarningLog) -> int:
    from parity.adapters import REGISTRY, SPEC_KEYS
    from parity.adapters.registry import PluginError

    for name in REGISTRY:
        origin = "  [plugin]" if REGISTRY.is_plugin(name) else ""
        try:
            cls = REGISTRY[name]
        except PluginError as exc:
            print(f"{name}  (BROKEN PLUGIN: {exc}){origin}")
            continue
        ok, why = cls.available()
        print(f"{name}  ({'available' if ok else 'UNAVAILABLE: ' + why}){origin}")
        print(f"    {cls.summary}")
        for key, option in cls.all_options().items():
            choices = f" [{'|'.join(option.choices)}]" if option.choices else ""
            print(f"    {key}={option.default!s}{choices}  {option.help}")
        for key, help_text in zip(SPEC_KEYS, _spec_key_help(cls.model_is_path), strict=True):
            print(f"    {key}={help_text}")
    return EXIT_OK


def _spec_key_help(model_is_path: bool) -> tuple[str, str]:
    model = (
        "PATH  a local model directory for this adapter only (default: --model)"
        if model_is_path
        else "NAME  the served model's name (default: chosen by the adapter; see its summary)"
    )
    return "NAME  tells two specs of one adapter apart", model


def finish_run(
    result: RunResult,
    out: str | None,
    title: str,
    log: WarningLog,
    extra: dict[str, Any] | None = None,
    *,
    csv: bool = False,
    junit: str | None = None,
    quiet: bool = True,
) -> int:
    """Write summary.json + report.md, print the verdict line (and, unless quiet, the closing
    table); the exit code follows the same summary["passed"] the line and the files show."""
    summary = write_report(result, out, title, log, extra, csv=csv, junit=junit)
    return _conclude(summary, out, quiet=quiet)


def write_report(
    result: RunResult,
    out: str | None,
    title: str,
    log: WarningLog,
    extra: dict[str, Any] | None = None,
    *,
    passed: bool | None = None,
    csv: bool = False,
    junit: str | None = None,
) -> dict[str, Any]:
    """The summary.json dict of a RunResult, written with report.md, report.html and
    results.parquet (+ results.csv) when `out` is given, and as JUnit XML to `junit`; both
    summary.json and report.html are derived from the per-text frame.

    `passed` is the command's verdict; by default every pair passed (as summary.json shows them)."""
    from parity.report import build_summary, render_markdown, write_outputs
    from parity.report.ci import publish
    from parity.report.html import write_html
    from parity.report.junit import write_junit
    from parity.report.markdown import verdict_text
    from parity.report.results import results_frame, write_results

    adapters = [
        {
            "label": label,
            "name": result.specs[label].name,
            "spec": result.specs[label].as_string(),
            "config": config,
        }
        for label, config in result.configs.items()
    ]
    frame = results_frame(result.comparison, result.tokens)
    summary = build_summary(
        result.comparison,
        adapters,
        model=result.model,
        n_texts=len(result.texts),
        extra=extra,
        frame=frame,
    )
    summary["passed"] = all(p["passed"] for p in summary["pairs"]) if passed is None else passed
    summary["verdict"] = verdict_text(summary)
    summary["warnings"] = list(log.entries)
    if out:
        write_outputs(Path(out), summary, render_markdown(summary, title))
        write_results(Path(out), frame, csv=csv)
        write_html(Path(out) / "report.html", summary, frame, title=title, tokens=result.tokens)
    if junit:
        write_junit(Path(junit).expanduser(), summary, title)
    publish(summary, title)  # GitHub's job summary and annotations; nothing elsewhere
    return summary


def verdict_line(summary: dict[str, Any], out: str | None) -> str:
    pairs = summary["pairs"]
    failed = [p for p in pairs if not p["passed"]]
    where = f"; report in {out}" if out else ""
    if summary["passed"]:
        return f"parity: PASS: {len(pairs)} pair(s) within tolerance on {summary['n_texts']} texts{where}"
    names = ", ".join(f"{p['a']} vs {p['b']} ({_failed_what(p)})" for p in failed)
    return f"parity: FAIL: {len(failed)} of {len(pairs)} pair(s) differ: {names}{where}"


def _failed_what(pair: dict[str, Any]) -> str:
    if pair["failures"] or not pair.get("minimal_failing"):
        return f"{pair['failures']}/{pair['n']}"
    return "a text the search found diverges inside a batch; see minimal_failing"


def cmd_run(args: argparse.Namespace, log: WarningLog) -> int:
    if _streams(args):
        return _stream_and_report(args, log)
    return _run_and_report(args, log, diagnose=not args.no_diagnose)[0]


def _streams(args: argparse.Namespace) -> bool:
    """--stream, --no-stream, or by the --texts file's size (parity.stream.streams_by_default)."""
    from parity.errors import ParityInputError
    from parity.stream import streams_by_default

    if args.stream and not args.texts:
        raise ParityInputError("--stream needs --texts FILE; give the file to stream")
    if args.keep_vectors and args.stream is False:
        raise ParityInputError("--keep-vectors writes a streamed run's vectors: drop --no-stream")
    if args.stream is None and args.texts and streams_by_default(args.texts):
        args.stream = True
        if not args.quiet:
            size = Path(args.texts).stat().st_size / 2**20
            print(
                f"parity: {args.texts} is {size:.0f} MiB: streaming it in chunks, memory "
                "constant (no retrieval set; report.html from a sample); --no-stream holds it all in "
                "memory",
                file=sys.stderr,
            )
    if args.keep_vectors and not args.stream:
        raise ParityInputError("--keep-vectors needs --stream (and --texts FILE)")
    return bool(args.stream)


def _stream_and_report(args: argparse.Namespace, log: WarningLog) -> int:
    """`parity run --stream`: parity.stream.stream_run, then the verdict line as a run's."""
    from parity.adapters import parse_specs
    from parity.metrics import Tolerance
    from parity.report.junit import write_junit
    from parity.report.terminal import progress_for
    from parity.stream import stream_run

    engine = _engine(args)
    try:
        summary = stream_run(
            parse_specs(args.adapter),
            args.texts,
            model=args.model,
            tolerance=Tolerance.parse(args.tol),
            progress=progress_for(sys.stderr, quiet=args.quiet),
            out=args.out,
            keep_vectors=args.keep_vectors,
            diagnose=not args.no_diagnose,
            warnings=log.entries,
            cache=_stream_cache(args, engine),
            csv=args.csv,
            engine=engine,
        )
    finally:
        if engine is not None:
            engine.close()
    if args.junit:
        write_junit(Path(args.junit).expanduser(), summary, "parity run")
    return _conclude(summary, args.out, quiet=args.quiet)


def _conclude(summary: dict[str, Any], out: str | None, *, quiet: bool) -> int:
    """Print a run's verdict line (and, unless quiet, its table); its exit code."""
    from parity.report.terminal import final_table

    print(verdict_line(summary, out))
    if not quiet:
        print(final_table(summary, out))
    return exit_code(summary["passed"])


def _stream_cache(args: argparse.Namespace, engine: Any) -> Any:
    """A streamed run's embedding cache: only one asked for by name (--cache DIR or
    $PARITY_CACHE), never the default .parity-cache: a corpus's vectors would outgrow its 2 GB
    bound and push out every other entry."""
    import os

    from parity.cache import ENV, default_cache

    if engine is not None or not (args.cache or os.environ.get(ENV)):
        return None
    return default_cache(args.cache, args.no_cache)


def _run_and_report(
    args: argparse.Namespace, log: WarningLog, *, diagnose: bool
) -> tuple[int, dict[str, Any]]:
    from parity.adapters import parse_specs
    from parity.cache import default_cache
    from parity.metrics import Tolerance
    from parity.remember import worth_keeping
    from parity.report.terminal import progress_for
    from parity.runner import run

    specs = parse_specs(args.adapter)
    tolerance = Tolerance.parse(args.tol)
    texts = _load_texts(args.texts)
    progress = progress_for(sys.stderr, quiet=args.quiet)
    engine = _engine(args)
    cache = None if engine is not None else default_cache(args.cache, args.no_cache)
    memo = _memo(cache, specs, args, texts, tolerance, diagnose)
    rerun = memo is None or getattr(args, "rerun", False)
    recalled = None if rerun else memo.recall(args.out, _outputs(args))
    if recalled is not None:
        return _replay(args, recalled)
    try:
        result = run(
            specs,
            texts,
            model=args.model,
            tolerance=tolerance,
            progress=progress,
            keep_adapters=diagnose,
            retrieval=None if args.no_retrieval else _retrieval_set(),
            cache=cache,
            engine=engine,
        )
    finally:
        if engine is not None:
            engine.close()
    extra = diagnose_and_close(result, progress, enabled=diagnose)
    summary = write_report(
        result, args.out, "parity run", log, extra, csv=args.csv, junit=args.junit
    )
    if memo is not None and worth_keeping(summary):
        memo.keep(summary, args.out, _outputs(args))
    return _conclude(summary, args.out, quiet=args.quiet), summary


def _outputs(args: argparse.Namespace) -> list[str]:
    """The files a run writes into --out (none without it)."""
    from parity.report.results import CSV_FILE, RESULTS_FILE

    if not args.out:
        return []
    return [
        "summary.json",
        "report.md",
        "report.html",
        RESULTS_FILE,
        *([CSV_FILE] if args.csv else []),
    ]


def _memo(
    cache: Any,
    specs: Any,
    args: argparse.Namespace,
    texts: list[str],
    tolerance: Any,
    diagnose: bool,
) -> Any:
    """Where this run's outputs are remembered in the cache (parity.remember), or None."""
    from parity.modelinfo import resolve_model
    from parity.remember import remembered

    if cache is None:
        return None
    model = resolve_model(args.model)
    settings = {
        "model": str(model),
        "tolerance": repr(tolerance),
        "retrieval": not args.no_retrieval,
        "diagnose": diagnose,
    }
    return remembered(cache, specs, model, texts, settings)


def _replay(args: argparse.Namespace, recalled: Any) -> tuple[int, dict[str, Any]]:
    """An unchanged run: the remembered outputs, verdict and table, as the run printed them."""
    from parity.report.ci import publish
    from parity.report.junit import write_junit
    from parity.report.results import CSV_FILE

    summary = recalled.summary
    if args.out and not args.csv:  # an earlier --csv run's rows must not outlive this verdict
        (Path(args.out) / CSV_FILE).unlink(missing_ok=True)
    if not args.quiet:
        for entry in summary.get("warnings", []):
            text = " ".join(str(entry["message"]).split())
            print(f"parity: warning: {entry['category']}: {text}", file=sys.stderr)
        print(
            f"parity: unchanged since the run of {recalled.ran} remembered in the cache (same "
            "adapters, model files, library versions, CPU, texts, tolerance and parity): its "
            "outputs, not run again; --rerun runs it (vectors from the cache), --no-cache "
            "embeds again",
            file=sys.stderr,
        )
    if args.junit:
        write_junit(Path(args.junit).expanduser(), summary, "parity run")
    publish(summary, "parity run")
    return _conclude(summary, args.out, quiet=args.quiet), summary


def _engine(args: argparse.Namespace) -> Any:
    """The Ray engine for --engine ray (None: embed here)."""
    if getattr(args, "engine", "local") != "ray":
        return None
    from parity.distributed import RayEngine

    return RayEngine(args.address)


def diagnose_and_close(
    result: RunResult, progress: Callable[[str], None], *, enabled: bool = True
) -> dict[str, Any]:
    """Fill each failing pair's causes, then free the adapters the run kept loaded for it;
    return run-level findings (the outlier, the time diagnosis took)."""
    try:
        return _diagnose(result, progress) if enabled and not result.passed else {}
    finally:
        for adapter in result.adapters.values():
            adapter.close()


def _diagnose(result: RunResult, progress: Callable[[str], None]) -> dict[str, Any]:
    from parity.diagnose import diagnose_run

    started = time.perf_counter()
    extra = diagnose_run(result, progress=progress)
    extra["diagnosis_seconds"] = round(time.perf_counter() - started, 3)
    return extra


def cmd_diagnose(args: argparse.Namespace, log: WarningLog) -> int:
    """Run, diagnose every failing pair, and print the causes (the report too, with --out)."""
    from parity.diagnose import cause_label

    code, summary = _run_and_report(args, log, diagnose=True)
    for pair in summary["pairs"]:
        for cause in pair["causes"]:
            print(
                f"{pair['a']} vs {pair['b']}: {cause_label(cause)} ({cause['explained']} texts, "
                f"{cause.get('evidence')}): {cause['detail']} Fix: {cause['fix']}"
            )
    return code


def cmd_fuzz(args: argparse.Namespace, log: WarningLog) -> int:
    from parity.adapters import parse_specs
    from parity.metrics import Tolerance
    from parity.report.terminal import progress_for
    from parity.search.fuzz import fuzz_run
    from parity.search.profiles import load_profile

    specs = parse_specs(args.adapter)
    profile = load_profile(args.profile)
    max_examples = profile.max_examples if args.max_examples is None else args.max_examples
    progress = progress_for(sys.stderr, quiet=args.quiet)
    seed = args.seed
    if seed is None and not profile.derandomize:
        # dev and deep search new texts each run; the seed in summary.json replays one
        import secrets

        seed = secrets.randbelow(2**32)
        progress(f"random seed {seed} (pass --seed {seed} to repeat this search)")
    result, minimal = fuzz_run(
        specs,
        model=args.model,
        tolerance=Tolerance.parse(args.tol),
        max_examples=max_examples,
        seed=seed,
        regressions=Path(args.regressions) if args.regressions else None,
        progress=progress,
    )
    extra = diagnose_and_close(result, progress)
    for pair in result.comparison.pairs:
        pair.searched = True
        pair.minimal_failing = minimal.get(f"{pair.a}\t{pair.b}")
    extra["max_examples"] = max_examples
    extra["seed"] = seed
    return finish_run(
        result,
        args.out,
        "parity fuzz",
        log,
        extra,
        csv=args.csv,
        junit=args.junit,
        quiet=args.quiet,
    )


def cmd_baseline(args: argparse.Namespace, log: WarningLog) -> int:
    from parity.baseline import create_baseline
    from parity.metrics import Tolerance
    from parity.report.terminal import progress_for

    out, previous = create_baseline(
        args.adapter,
        _load_texts(args.texts),
        args.out,
        model=args.model,
        tolerance=Tolerance.parse(args.tol),
        retrieval=None if args.no_retrieval else _retrieval_set(),
        force=args.force,
        progress=progress_for(sys.stderr, quiet=args.quiet),
    )
    kept = f"; the previous one is kept in {previous}" if previous else ""
    print(f"parity: baseline written to {out} ({len(args.adapter)} adapter(s)){kept}")
    return EXIT_OK


def cmd_gate(args: argparse.Namespace, log: WarningLog) -> int:
    from parity.gate import DEFAULT_MAX_NDCG_DROP, run_gate, verdict_line
    from parity.report.terminal import final_table, progress_for

    gate = run_gate(
        args.baseline,
        spec_strings=args.adapter,
        model=args.model,
        tol=args.tol,
        texts=_load_texts(args.texts) if args.texts else None,
        max_ndcg_drop=(DEFAULT_MAX_NDCG_DROP if args.max_ndcg_drop is None else args.max_ndcg_drop),
        update=args.update,
        diagnose=not args.no_diagnose,
        progress=progress_for(sys.stderr, quiet=args.quiet),
    )
    # --update accepts what drifted: the command passes, summary["baseline"] keeps the check
    passed = gate.passed or gate.updated is not None
    summary = write_report(
        gate.result,
        args.out,
        "parity gate",
        log,
        {"baseline": gate.section()},
        passed=passed,
        csv=args.csv,
        junit=args.junit,
    )
    line = verdict_line(gate, args.out)
    if passed and not gate.passed:
        line = "parity gate: UPDATED: the replaced check: " + line.removeprefix("parity gate: ")
    print(line)
    if not args.quiet:
        print(final_table(summary, args.out))
    return exit_code(passed)


def cmd_tiny_model(args: argparse.Namespace, log: WarningLog) -> int:
    from parity.tinymodels import build_tiny_model

    print(build_tiny_model(args.kind, args.out, seed=args.seed))
    return EXIT_OK


def cmd_export_onnx(args: argparse.Namespace, log: WarningLog) -> int:
    from parity.export import export_onnx

    def progress(message: str) -> None:
        if not args.quiet:
            print(f"[parity] {message}", file=sys.stderr)

    out = export_onnx(
        args.model, args.out, opset=args.opset, quantize=args.quantize, progress=progress
    )
    print(out)
    return EXIT_OK


def cmd_cache(args: argparse.Namespace, log: WarningLog) -> int:
    """`parity cache info` / `parity cache clear`."""
    from parity.cache import EmbeddingCache, default_cache

    cache = default_cache(args.cache, False) or EmbeddingCache()
    if args.action == "clear":
        print(f"removed {cache.clear()} cached shards and remembered runs from {cache.root}")
    else:
        print("\n".join(cache.info().lines()))
    return EXIT_OK


COMMANDS: dict[str, Callable[[argparse.Namespace, WarningLog], int]] = {
    "run": cmd_run,
    "diagnose": cmd_diagnose,
    "fuzz": cmd_fuzz,
    "baseline": cmd_baseline,
    "gate": cmd_gate,
    "list-adapters": cmd_list_adapters,
    "tiny-model": cmd_tiny_model,
    "export-onnx": cmd_export_onnx,
    "cache": cmd_cache,
}
