"""The `parity` command line: run, diagnose, fuzz, baseline create, gate, list-adapters, tiny-model.

Exit codes: 0 pass, 1 a finding (summary.json says "passed": false), 2 a usage or input error or a
damaged baseline, 3 an internal error (traceback in error.log; `--debug` re-raises it). On 2 and 3
a report command's --out/summary.json says "passed": false with the "error" line.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from parity.cli.commands import COMMANDS, finish_run, verdict_line, write_report
from parity.cli.outcome import (
    EXIT_DIFFERENT,
    EXIT_ERROR,
    EXIT_INTERNAL,
    EXIT_OK,
    WarningLog,
    exit_code,
    handled,
    user_paths,
    write_error_log,
)
from parity.cli.parser import build_parser

__all__ = [
    "COMMANDS",
    "EXIT_DIFFERENT",
    "EXIT_ERROR",
    "EXIT_INTERNAL",
    "EXIT_OK",
    "WarningLog",
    "build_parser",
    "exit_code",
    "finish_run",
    "main",
    "offline",
    "verdict_line",
    "write_error_log",
    "write_report",
]


def offline() -> None:
    """Never reach for a model hub: a missing local model is an error, not a download or a hang."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # our own progress lines replace the per-load weight bars
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return its exit code (see the module docstring)."""
    offline()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    with WarningLog().capture() as log:
        try:
            with user_paths(args):
                return COMMANDS[args.command](args, log)
        except Exception as exc:
            return handled(exc, args, argv, log)
        except KeyboardInterrupt:
            print("parity: interrupted", file=sys.stderr)
            return 130
