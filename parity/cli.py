"""The `parity` command line: run, diagnose, fuzz, baseline create, gate, list-adapters, tiny-model.

Exit codes: 0 pass, 1 a finding (summary.json says "passed": false), 2 a usage or input error or a
damaged baseline, 3 an internal error (traceback in error.log; `--debug` re-raises it).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from parity.version import __version__

if TYPE_CHECKING:
    from parity.runner import RunResult

EXIT_OK, EXIT_DIFFERENT, EXIT_ERROR, EXIT_INTERNAL = 0, 1, 2, 3

# the commands whose --out is a report directory, where an internal error's traceback is written
REPORT_COMMANDS = frozenset({"run", "diagnose", "fuzz", "gate"})
# what Python itself hides unless asked (-W, PYTHONWARNINGS): library internals a user cannot act on
QUIET_CATEGORIES: tuple[type[Warning], ...] = (
    DeprecationWarning,
    PendingDeprecationWarning,
    ImportWarning,
    ResourceWarning,
)


def offline() -> None:
    """Never reach for a model hub: a missing local model is an error, not a download or a hang."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # our own progress lines replace the per-load weight bars
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def _positive_int(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {raw!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {raw!r}")
    return value


def _non_negative(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {raw!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {raw!r}")
    return value


def exit_code(passed: bool) -> int:
    """The one place a verdict becomes an exit code."""
    return EXIT_OK if passed else EXIT_DIFFERENT


class WarningLog:
    """Every warning raised during one command: printed on stderr the first time a category and
    message are seen (one line), and kept for summary.json["warnings"]."""

    def __init__(self) -> None:
        self.entries: list[dict[str, str]] = []

    def show(
        self,
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: Any = None,
        line: str | None = None,
    ) -> None:
        """A drop-in for warnings.showwarning."""
        entry = {"category": category.__name__, "message": str(message)}
        if entry in self.entries:
            return
        self.entries.append(entry)
        text = " ".join(entry["message"].split())
        print(f"parity: warning: {entry['category']}: {text}", file=sys.stderr)

    @contextmanager
    def capture(self) -> Iterator[WarningLog]:
        """Route warnings here; without -W/PYTHONWARNINGS every one counts, each time it is raised
        (so a second command in one process sees it too), except QUIET_CATEGORIES."""
        with warnings.catch_warnings():
            if not sys.warnoptions:
                warnings.simplefilter("always")
                for category in QUIET_CATEGORIES:
                    warnings.filterwarnings("ignore", category=category)
            warnings.showwarning = self.show
            yield self


def _add_debug(parser: argparse.ArgumentParser, *, top: bool = False) -> None:
    # after the subcommand too: SUPPRESS keeps a subparser from resetting the top-level value
    parser.add_argument(
        "--debug",
        action="store_true",
        default=False if top else argparse.SUPPRESS,
        help="on an internal error (exit 3), re-raise it with its full traceback",
    )


def _add_no_retrieval(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-retrieval",
        action="store_true",
        help="skip the built-in retrieval set (ranking impact: nDCG@10, top-10 overlap, tau)",
    )


def _add_common(
    parser: argparse.ArgumentParser,
    *,
    texts: bool = True,
    out: bool = True,
    recorded: bool = False,
    adapters: str = "required, twice or more",
) -> None:
    """The options every command shares; `recorded`: defaults come from a baseline's manifest."""
    default = {
        "model": "the recorded model" if recorded else "bundled all-MiniLM-L6-v2",
        "adapter": "the recorded adapters" if recorded else adapters,
        "texts": "the recorded texts; another set is an error" if recorded else "built-in corpus",
        "tol": "the recorded tolerances" if recorded else "5e-3",
    }
    parser.add_argument("--model", help=f"local model directory (default: {default['model']})")
    parser.add_argument(
        "--adapter",
        action="append",
        default=[],
        metavar="SPEC",
        help=f"NAME[:key=value,...], repeatable; see `parity list-adapters` "
        f"(default: {default['adapter']})",
    )
    if texts:
        parser.add_argument(
            "--texts",
            metavar="FILE",
            help=f".jsonl, .txt, .csv or .parquet (default: {default['texts']})",
        )
    parser.add_argument(
        "--tol",
        action="append",
        metavar="TOL",
        help="5e-3 for max_abs, cosine and euclidean, or metric=value,... with metrics "
        "max_abs, cosine, euclidean, rel_euclidean (||a-b||/||a||, off unless set); "
        "metric=off turns one off "
        f"(default: {default['tol']})",
    )
    if out:
        parser.add_argument(
            "--out",
            metavar="DIR",
            help="write summary.json and report.md here (and error.log on an internal error)",
        )
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    _add_debug(parser)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="parity",
        description="Do your embedding stacks produce the same vectors? If not, why?",
        epilog="exit codes: 0 pass, 1 a pair differs or drifted, 2 usage or input error or a "
        "damaged baseline, 3 internal error (traceback in --out/error.log or a temp file)",
    )
    parser.add_argument("--version", action="version", version=f"parity {__version__}")
    _add_debug(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run_parser = sub.add_parser(
        "run", help="embed texts with several adapters and compare every pair"
    )
    _add_common(run_parser)
    run_parser.add_argument("--no-diagnose", action="store_true", help="skip the diagnosis")
    _add_no_retrieval(run_parser)
    _add_fuzz(sub)
    diagnose_parser = sub.add_parser("diagnose", help="explain why a pair of adapters differs")
    _add_common(diagnose_parser)
    _add_no_retrieval(diagnose_parser)
    _add_baseline(sub)
    _add_gate(sub)
    listing = sub.add_parser(
        "list-adapters", help="adapters, their options and defaults, availability here"
    )
    _add_debug(listing)
    tiny = sub.add_parser("tiny-model", help="build a small whitespace-sensitive test model")
    _add_debug(tiny)
    tiny.add_argument("--kind", choices=("wordpiece", "bpe", "unigram"), default="bpe")
    tiny.add_argument("--seed", type=int, default=0)
    tiny.add_argument("--out", required=True, metavar="DIR")
    return parser


def _add_fuzz(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    fuzz = sub.add_parser("fuzz", help="search generated texts for a divergence and shrink it")
    _add_common(fuzz, texts=False)
    fuzz.add_argument(
        "--max-examples",
        type=_positive_int,
        default=None,
        help="batches per pair (default: from the hypothesis profile)",
    )
    fuzz.add_argument(
        "--seed",
        type=int,
        default=None,
        help="random seed (default: fixed in the ci profile, new each run in dev and deep; "
        "summary.json records it)",
    )
    fuzz.add_argument(
        "--profile",
        choices=("ci", "dev", "deep"),
        default=None,
        help="search settings: ci: 25 batches per pair, fixed seed; dev: 100 batches, new seed "
        "each run; deep: 3000 batches, new seed each run (default: $HYPOTHESIS_PROFILE, which "
        "must then be ci, dev or deep; else dev)",
    )
    fuzz.add_argument(
        "--regressions",
        default="fixtures/regressions.jsonl",
        help="append minimal failing texts here ('' to skip)",
    )


def _add_baseline(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    baseline = sub.add_parser("baseline", help="record today's vectors for `parity gate`")
    _add_debug(baseline)
    baseline_sub = baseline.add_subparsers(dest="baseline_command", required=True, metavar="ACTION")
    create = baseline_sub.add_parser(
        "create", help="embed the texts with each adapter and write a baseline directory"
    )
    _add_common(create, out=False, adapters="required, once or more")
    create.add_argument("--out", required=True, metavar="DIR", help="the baseline directory")
    create.add_argument(
        "--force", action="store_true", help="replace an existing baseline (kept as DIR.prev)"
    )
    _add_no_retrieval(create)


def _add_gate(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    gate = sub.add_parser("gate", help="check today's vectors against a baseline")
    gate.add_argument("--baseline", required=True, metavar="DIR", help="made by `baseline create`")
    _add_common(gate, recorded=True)
    gate.add_argument(
        "--max-ndcg-drop",
        type=_non_negative,
        default=None,
        metavar="X",
        help="fail when an adapter's nDCG@10 on the retrieval set drops more than X below its "
        "baseline's (default 0.005; a rise is reported, never a failure)",
    )
    gate.add_argument(
        "--update",
        action="store_true",
        help="record today's vectors as the new baseline (the old one is kept as DIR.prev)",
    )
    gate.add_argument("--no-diagnose", action="store_true", help="skip explaining the drift")


def _load_texts(path: str | None) -> list[str]:
    from parity.texts import builtin_corpus, load_texts

    return load_texts(path) if path else builtin_corpus()


def _retrieval_set() -> Any:
    from parity.retrieval import load_retrieval_set

    return load_retrieval_set()


def cmd_list_adapters(args: argparse.Namespace, log: WarningLog) -> int:
    from parity.adapters import REGISTRY

    for name, cls in REGISTRY.items():
        ok, why = cls.available()
        print(f"{name}  ({'available' if ok else 'UNAVAILABLE: ' + why})")
        print(f"    {cls.summary}")
        for key, option in cls.all_options().items():
            choices = f" [{'|'.join(option.choices)}]" if option.choices else ""
            print(f"    {key}={option.default!s}{choices}  {option.help}")
        print("    label=NAME  tells two specs of one adapter apart")
    return EXIT_OK


def finish_run(
    result: RunResult,
    out: str | None,
    title: str,
    log: WarningLog,
    extra: dict[str, Any] | None = None,
) -> int:
    """Write summary.json + report.md, print the verdict line; the exit code follows the same
    summary["passed"] the line and the files show."""
    summary = write_report(result, out, title, log, extra)
    print(verdict_line(summary, out))
    return exit_code(summary["passed"])


def write_report(
    result: RunResult,
    out: str | None,
    title: str,
    log: WarningLog,
    extra: dict[str, Any] | None = None,
    *,
    passed: bool | None = None,
) -> dict[str, Any]:
    """The summary.json dict of a RunResult, written with report.md when `out` is given.

    `passed` is the command's verdict; by default every pair passed (as summary.json shows them)."""
    from parity.report import build_summary, render_markdown, write_outputs

    adapters = [
        {
            "label": label,
            "name": result.specs[label].name,
            "spec": result.specs[label].as_string(),
            "config": config,
        }
        for label, config in result.configs.items()
    ]
    summary = build_summary(
        result.comparison, adapters, model=result.model, n_texts=len(result.texts), extra=extra
    )
    summary["passed"] = all(p["passed"] for p in summary["pairs"]) if passed is None else passed
    summary["warnings"] = list(log.entries)
    if out:
        write_outputs(Path(out), summary, render_markdown(summary, title))
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
    return _run_and_report(args, log, diagnose=not args.no_diagnose)[0]


def _run_and_report(
    args: argparse.Namespace, log: WarningLog, *, diagnose: bool
) -> tuple[int, dict[str, Any]]:
    from parity.adapters import parse_specs
    from parity.compare import Tolerance
    from parity.runner import Progress, run

    specs = parse_specs(args.adapter)
    tolerance = Tolerance.parse(args.tol)
    texts = _load_texts(args.texts)
    progress = Progress(None if args.quiet else sys.stderr)
    result = run(
        specs,
        texts,
        model=args.model,
        tolerance=tolerance,
        progress=progress,
        keep_adapters=diagnose,
        retrieval=None if args.no_retrieval else _retrieval_set(),
    )
    extra = diagnose_and_close(result, progress, enabled=diagnose)
    summary = write_report(result, args.out, "parity run", log, extra)
    print(verdict_line(summary, args.out))
    return exit_code(summary["passed"]), summary


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
    code, summary = _run_and_report(args, log, diagnose=True)
    for pair in summary["pairs"]:
        for cause in pair["causes"]:
            name = "+".join([cause["cause"], *cause.get("also", [])])
            marker = "inferred: " if cause.get("evidence") == "inferred" else ""
            print(
                f"{pair['a']} vs {pair['b']}: {marker}{name} ({cause['explained']} texts, "
                f"{cause.get('evidence')}): {cause['detail']} Fix: {cause['fix']}"
            )
    return code


def cmd_fuzz(args: argparse.Namespace, log: WarningLog) -> int:
    from parity.adapters import parse_specs
    from parity.compare import Tolerance
    from parity.runner import Progress
    from parity.search.fuzz import fuzz_run
    from parity.search.profiles import load_profile

    specs = parse_specs(args.adapter)
    profile = load_profile(args.profile)
    max_examples = profile.max_examples if args.max_examples is None else args.max_examples
    progress = Progress(None if args.quiet else sys.stderr)
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
    return finish_run(result, args.out, "parity fuzz", log, extra)


def cmd_baseline(args: argparse.Namespace, log: WarningLog) -> int:
    from parity.baseline import create_baseline
    from parity.compare import Tolerance
    from parity.runner import Progress

    out, previous = create_baseline(
        args.adapter,
        _load_texts(args.texts),
        args.out,
        model=args.model,
        tolerance=Tolerance.parse(args.tol),
        retrieval=None if args.no_retrieval else _retrieval_set(),
        force=args.force,
        progress=Progress(None if args.quiet else sys.stderr),
    )
    kept = f"; the previous one is kept in {previous}" if previous else ""
    print(f"parity: baseline written to {out} ({len(args.adapter)} adapter(s)){kept}")
    return EXIT_OK


def cmd_gate(args: argparse.Namespace, log: WarningLog) -> int:
    from parity.gate import DEFAULT_MAX_NDCG_DROP, run_gate, verdict_line
    from parity.runner import Progress

    gate = run_gate(
        args.baseline,
        spec_strings=args.adapter,
        model=args.model,
        tol=args.tol,
        texts=_load_texts(args.texts) if args.texts else None,
        max_ndcg_drop=(DEFAULT_MAX_NDCG_DROP if args.max_ndcg_drop is None else args.max_ndcg_drop),
        update=args.update,
        diagnose=not args.no_diagnose,
        progress=Progress(None if args.quiet else sys.stderr),
    )
    # --update accepts what drifted: the command passes, summary["baseline"] keeps the check
    passed = gate.passed or gate.updated is not None
    write_report(
        gate.result, args.out, "parity gate", log, {"baseline": gate.section()}, passed=passed
    )
    line = verdict_line(gate, args.out)
    if passed and not gate.passed:
        line = "parity gate: UPDATED: the replaced check: " + line.removeprefix("parity gate: ")
    print(line)
    return exit_code(passed)


def cmd_tiny_model(args: argparse.Namespace, log: WarningLog) -> int:
    from parity.tinymodels import build_tiny_model

    print(build_tiny_model(args.kind, args.out, seed=args.seed))
    return EXIT_OK


COMMANDS: dict[str, Callable[[argparse.Namespace, WarningLog], int]] = {
    "run": cmd_run,
    "diagnose": cmd_diagnose,
    "fuzz": cmd_fuzz,
    "baseline": cmd_baseline,
    "gate": cmd_gate,
    "list-adapters": cmd_list_adapters,
    "tiny-model": cmd_tiny_model,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return its exit code (see the module docstring)."""
    offline()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    with WarningLog().capture() as log:
        try:
            return COMMANDS[args.command](args, log)
        except Exception as exc:
            return _handled(exc, args, argv)
        except KeyboardInterrupt:
            print("parity: interrupted", file=sys.stderr)
            return 130


def _handled(exc: Exception, args: argparse.Namespace, argv: list[str]) -> int:
    """One line on stderr for an exception that left a command, and its exit code."""
    from parity.errors import ParityError

    if isinstance(exc, ParityError):
        print(f"parity: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if isinstance(exc, OSError):  # a path we were told to read or write: still one line, exit 2
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"parity: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_ERROR
    if args.debug:
        raise exc
    out = getattr(args, "out", None) if args.command in REPORT_COMMANDS else None
    log_path = write_error_log(exc, out, argv)
    text = " ".join(str(exc).split())
    text = text if len(text) <= 300 else text[:299] + "…"
    print(
        f"parity: internal error: {type(exc).__name__}: {text} (traceback in {log_path})",
        file=sys.stderr,
    )
    return EXIT_INTERNAL


def write_error_log(exc: BaseException, out: str | None, argv: Sequence[str]) -> Path:
    """Write the traceback to OUT/error.log, or to a temp file when there is no --out (or it
    cannot be written); return where it went."""
    import platform
    import tempfile
    import traceback

    text = (
        f"parity {__version__} on Python {platform.python_version()}\n"
        f"command: parity {' '.join(argv)}\n\n"
        + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    )
    if out:
        from parity.files import write_atomic

        path = Path(out) / "error.log"
        try:
            write_atomic(path, text)
            return path
        except OSError:
            pass
    fd, name = tempfile.mkstemp(prefix="parity-error-", suffix=".log")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    return Path(name)


if __name__ == "__main__":
    sys.exit(main())
