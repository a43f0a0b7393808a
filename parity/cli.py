"""The `parity` command line: run, diagnose, fuzz, baseline create, gate, list-adapters, tiny-model."""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_DIFFERENT, EXIT_ERROR = 0, 1, 2


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
        help="5e-3 for every metric, or metric=value,... (max_abs, cosine, euclidean) "
        f"(default: {default['tol']})",
    )
    if out:
        parser.add_argument("--out", metavar="DIR", help="write summary.json and report.md here")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="parity", description="Do your embedding stacks produce the same vectors? If not, why?"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run_parser = sub.add_parser(
        "run", help="embed texts with several adapters and compare every pair"
    )
    _add_common(run_parser)
    run_parser.add_argument("--no-diagnose", action="store_true", help="skip the diagnosis")
    _add_no_retrieval(run_parser)
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
        help="hypothesis profile (default: $HYPOTHESIS_PROFILE or dev)",
    )
    fuzz.add_argument(
        "--regressions",
        default="fixtures/regressions.jsonl",
        help="append minimal failing texts here ('' to skip)",
    )
    diagnose_parser = sub.add_parser("diagnose", help="explain why a pair of adapters differs")
    _add_common(diagnose_parser)
    _add_no_retrieval(diagnose_parser)
    baseline = sub.add_parser("baseline", help="record today's vectors for `parity gate`")
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
    gate = sub.add_parser("gate", help="check today's vectors against a baseline")
    gate.add_argument("--baseline", required=True, metavar="DIR", help="made by `baseline create`")
    _add_common(gate, recorded=True)
    gate.add_argument(
        "--max-ndcg-drop",
        type=_non_negative,
        default=None,
        metavar="X",
        help="fail when an adapter's nDCG@10 on the retrieval set moves more than X from its "
        "baseline (default 0.005)",
    )
    gate.add_argument(
        "--update",
        action="store_true",
        help="record today's vectors as the new baseline (the old one is kept as DIR.prev)",
    )
    gate.add_argument("--no-diagnose", action="store_true", help="skip explaining the drift")
    sub.add_parser("list-adapters", help="adapters, their options and defaults, availability here")
    tiny = sub.add_parser("tiny-model", help="build a small whitespace-sensitive test model")
    tiny.add_argument("--kind", choices=("wordpiece", "bpe", "unigram"), default="bpe")
    tiny.add_argument("--seed", type=int, default=0)
    tiny.add_argument("--out", required=True, metavar="DIR")
    return parser


def _load_texts(path: str | None) -> list[str]:
    from parity.texts import builtin_corpus, load_texts

    return load_texts(path) if path else builtin_corpus()


def _retrieval_set() -> Any:
    from parity.retrieval import load_retrieval_set

    return load_retrieval_set()


def cmd_list_adapters(args: argparse.Namespace) -> int:
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
    result: Any, out: str | None, title: str, extra: dict[str, Any] | None = None
) -> tuple[int, dict[str, Any]]:
    """Write summary.json + report.md, print the verdict line; return the exit code and summary."""
    summary = write_report(result, out, title, extra)
    print(verdict_line(summary, out))
    return (EXIT_OK if summary["passed"] else EXIT_DIFFERENT), summary


def write_report(
    result: Any, out: str | None, title: str, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The summary.json dict of a RunResult, written with report.md when `out` is given."""
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
    if out:
        write_outputs(Path(out), summary, render_markdown(summary, title))
    return summary


def verdict_line(summary: dict[str, Any], out: str | None) -> str:
    pairs = summary["pairs"]
    failed = [p for p in pairs if not p["passed"]]
    where = f"; report in {out}" if out else ""
    if not failed:
        return f"parity: PASS: {len(pairs)} pair(s) within tolerance on {summary['n_texts']} texts{where}"
    names = ", ".join(f"{p['a']} vs {p['b']} ({p['failures']}/{p['n']})" for p in failed)
    return f"parity: FAIL: {len(failed)} of {len(pairs)} pair(s) differ: {names}{where}"


def cmd_run(args: argparse.Namespace) -> int:
    return _run_and_report(args, diagnose=not args.no_diagnose)[0]


def _run_and_report(args: argparse.Namespace, *, diagnose: bool) -> tuple[int, dict[str, Any]]:
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
    return finish_run(result, args.out, "parity run", extra)


def diagnose_and_close(
    result: Any, progress: Callable[[str], None], *, enabled: bool = True
) -> dict[str, Any]:
    """Fill each failing pair's causes, then free the adapters the run kept loaded for it;
    return run-level findings (the outlier, the time diagnosis took)."""
    try:
        return _diagnose(result, progress) if enabled and not result.passed else {}
    finally:
        for adapter in result.adapters.values():
            adapter.close()


def _diagnose(result: Any, progress: Callable[[str], None]) -> dict[str, Any]:
    from parity.diagnose import diagnose_run

    started = time.perf_counter()
    extra = diagnose_run(result, progress=progress)
    extra["diagnosis_seconds"] = round(time.perf_counter() - started, 3)
    return extra


def cmd_diagnose(args: argparse.Namespace) -> int:
    """Run, diagnose every failing pair, and print the causes (the report too, with --out)."""
    code, summary = _run_and_report(args, diagnose=True)
    for pair in summary["pairs"]:
        for cause in pair["causes"]:
            print(
                f"{pair['a']} vs {pair['b']}: {cause['cause']} ({cause['explained']} "
                f"texts): {cause['detail']} Fix: {cause['fix']}"
            )
    return code


def cmd_fuzz(args: argparse.Namespace) -> int:
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
        found = minimal.get(f"{pair.a}\t{pair.b}")
        pair.extra["minimal_failing"] = found
    extra["max_examples"] = max_examples
    extra["seed"] = seed
    code, _ = finish_run(result, args.out, "parity fuzz", extra)
    return EXIT_DIFFERENT if any(minimal.values()) else code


def cmd_baseline(args: argparse.Namespace) -> int:
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


def cmd_gate(args: argparse.Namespace) -> int:
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
    extra = {"passed": gate.passed, "baseline": gate.section()}
    write_report(gate.result, args.out, "parity gate", extra)
    print(verdict_line(gate, args.out))
    return EXIT_OK if gate.passed or gate.updated else EXIT_DIFFERENT


def cmd_tiny_model(args: argparse.Namespace) -> int:
    from parity.tinymodels import build_tiny_model

    print(build_tiny_model(args.kind, args.out, seed=args.seed))
    return EXIT_OK


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": cmd_run,
    "diagnose": cmd_diagnose,
    "fuzz": cmd_fuzz,
    "baseline": cmd_baseline,
    "gate": cmd_gate,
    "list-adapters": cmd_list_adapters,
    "tiny-model": cmd_tiny_model,
}


def main(argv: Sequence[str] | None = None) -> int:
    offline()
    from parity.errors import ParityError

    parser = build_parser()
    args = parser.parse_args(argv)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        try:
            code = COMMANDS[args.command](args)
        except ParityError as exc:
            print(f"parity: error: {exc}", file=sys.stderr)
            code = EXIT_ERROR
        except OSError as exc:  # a path we were told to read or write: still one line, exit 2
            where = f"{exc.filename}: " if exc.filename else ""
            print(f"parity: error: {where}{exc.strerror or exc}", file=sys.stderr)
            code = EXIT_ERROR
        except KeyboardInterrupt:
            print("parity: interrupted", file=sys.stderr)
            code = 130
    from parity.compare import SelfComparisonWarning

    for warning in caught:
        if issubclass(warning.category, SelfComparisonWarning):
            print(f"parity: warning: {warning.message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
