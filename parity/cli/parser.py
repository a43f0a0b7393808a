"""The `parity` argument parser: every command, its options and their help."""

from __future__ import annotations

import argparse

from parity.version import __version__


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


def _add_cache(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cache",
        metavar="DIR",
        help="reuse vectors embedded before with the same adapter settings, model files, "
        "library versions and platform (default: $PARITY_CACHE, else .parity-cache)",
    )
    parser.add_argument("--no-cache", action="store_true", help="embed everything again")
    parser.add_argument(
        "--rerun",
        action="store_true",
        help="run again even when the cache remembers this very run (its vectors still come "
        "from the cache)",
    )


def _add_stream(run_parser: argparse.ArgumentParser) -> None:
    """--stream / --no-stream (default: by the --texts file's size) and --keep-vectors."""
    streaming = run_parser.add_mutually_exclusive_group()
    streaming.add_argument(
        "--stream",
        action="store_const",
        const=True,
        help="read --texts in chunks and write per-text results as it goes: memory stays "
        "constant however large the file (no retrieval set; report.html's figures from a "
        "sample); the default "
        "for a --texts file of 64 MiB or more",
    )
    streaming.add_argument(
        "--no-stream",
        dest="stream",
        action="store_const",
        const=False,
        help="hold every text and vector in memory, however large the --texts file",
    )
    run_parser.add_argument(
        "--keep-vectors",
        metavar="DIR",
        help="with --stream: write each adapter's vectors as DIR/<label>/<chunk>.npy shards",
    )


def _add_engine(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="where texts are embedded: this process, or a Ray cluster (one actor pool per "
        "adapter; the cache is not used) (default: local)",
    )
    parser.add_argument(
        "--address",
        metavar="ADDR",
        help="with --engine ray: the cluster to join, e.g. auto or ray://HOST:10001 "
        "(default: $RAY_ADDRESS, else a local one on this machine's cores)",
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
            help="write summary.json, report.md, report.html and results.parquet here (on exit "
            "2 or 3: a summary.json that says passed: false and why, and error.log on an "
            "internal error)",
        )
        parser.add_argument(
            "--csv",
            action="store_true",
            help="with --out: also write the per-text results.parquet as results.csv",
        )
        parser.add_argument(
            "--junit",
            metavar="FILE",
            help="write JUnit XML here: one testcase per pair (for CI test reports)",
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
    _add_cache(run_parser)
    _add_stream(run_parser)
    _add_engine(run_parser)
    _add_fuzz(sub)
    diagnose_parser = sub.add_parser("diagnose", help="explain why a pair of adapters differs")
    _add_common(diagnose_parser)
    _add_no_retrieval(diagnose_parser)
    _add_cache(diagnose_parser)
    _add_engine(diagnose_parser)
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
    _add_export_onnx(sub)
    cache = sub.add_parser("cache", help="the embedding cache of run and diagnose: info, clear")
    _add_debug(cache)
    cache.add_argument("action", choices=("info", "clear"))
    cache.add_argument("--cache", metavar="DIR", help="default: $PARITY_CACHE, else .parity-cache")
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


def _add_export_onnx(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    export = sub.add_parser(
        "export-onnx",
        help="export a model's transformer to DIR/model.onnx for the onnx and fastembed adapters",
    )
    _add_debug(export)
    export.add_argument("--model", help="local model directory (default: bundled all-MiniLM-L6-v2)")
    export.add_argument(
        "--out", required=True, metavar="DIR", help="a new or empty directory to write"
    )
    export.add_argument("--opset", type=_positive_int, default=18, help="ONNX opset (default: 18)")
    export.add_argument(
        "--quantize",
        choices=("int8",),
        help="int8: onnxruntime dynamic quantization (int8 weights, activations per batch)",
    )
    export.add_argument("--quiet", action="store_true", help="no progress on stderr")
