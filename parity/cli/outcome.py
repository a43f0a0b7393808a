"""How a command ends: exit codes, the warnings it raised, and the one line (plus error.log and a
failing summary.json) an exception that left it turns into."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from parity.version import __version__

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


def handled(exc: Exception, args: argparse.Namespace, argv: list[str], log: WarningLog) -> int:
    """One line on stderr for an exception that left a command, and its exit code; a report
    command's --out then holds a summary.json that says "passed": false and why, never an earlier
    run's verdict."""
    from parity.errors import ParityError

    out = getattr(args, "out", None) if args.command in REPORT_COMMANDS else None
    if isinstance(exc, ParityError):
        line = f"parity: error: {exc}"
        code = EXIT_ERROR
    else:  # an OSError too: one about a path the user gave arrives as a ParityInputError
        if args.debug:
            raise exc
        log_path = write_error_log(exc, out, argv)
        text = " ".join(str(exc).split())
        text = text if len(text) <= 300 else text[:299] + "…"
        line = f"parity: internal error: {type(exc).__name__}: {text} (traceback in {log_path})"
        code = EXIT_INTERNAL
    if out and Path(out).is_dir():  # an input error creates no --out; a crash's error.log did
        write_error_summary(Path(out), line.removeprefix("parity: "), code, log)
    junit = getattr(args, "junit", None) if args.command in REPORT_COMMANDS else None
    if junit:  # CI reads this file: it must show this run's error, not an earlier run's cases
        from parity.report.junit import write_error_junit

        write_error_junit(
            Path(junit).expanduser(), f"parity {args.command}", line.removeprefix("parity: ")
        )
    print(line, file=sys.stderr)
    return code


def write_error_summary(out: Path, error: str, code: int, log: WarningLog) -> None:
    """Replace OUT/summary.json with one that says the command failed (and why), and remove the
    reports, per-text results (and an error.log) an earlier run left there; an OUT that cannot be
    written is left as it is."""
    from parity.report.summary import error_summary, write_json

    try:
        # an earlier run's pages and per-text results must not outlive its verdict
        for stale in ("report.md", "report.html", "results.parquet", "results.csv"):
            (out / stale).unlink(missing_ok=True)
        if code != EXIT_INTERNAL:  # this error wrote no traceback: one left there is stale
            (out / "error.log").unlink(missing_ok=True)
        write_json(out / "summary.json", error_summary(error, code, log.entries))
    except OSError:
        pass


# the options that name a path the user chose, so an OSError about one of them is an input error
PATH_OPTIONS = ("out", "texts", "baseline", "model", "regressions")


def _concerns(filename: Any, given: Path, *, depth: int | None = None) -> bool:
    """Whether an OSError's file is the given path, inside it (at most `depth` levels down when
    given), an ancestor that does not exist as a directory (mkdir failed), or a sibling made for
    it (.DIR.tmp-N, DIR.prev, DIR.lock) or a file inside such a sibling."""
    if filename is None or isinstance(filename, int):  # no name, or a file descriptor
        return False
    path, root = Path(os.fsdecode(filename)).absolute(), given.expanduser().absolute()
    if path == root or root in path.parents:
        return depth is None or len(path.relative_to(root).parts) <= depth
    if path in root.parents:
        return not path.is_dir()
    return any(
        p.parent == root.parent and p.name.lstrip(".").startswith(root.name + ".")
        for p in (path, *path.parents)
    )


@contextmanager
def user_paths(args: argparse.Namespace) -> Iterator[None]:
    """Turn an OSError about a path given on the command line (--out, --texts, --baseline,
    --model, --regressions) into a ParityInputError naming the path, the option and the reason;
    any other OSError (a framework's cache, a socket, package data) stays a crash (exit 3)."""
    from parity.errors import ParityInputError
    from parity.files import os_reason

    try:
        yield
    except OSError as exc:
        for option in PATH_OPTIONS:
            value = getattr(args, option, None)
            if not value:
                continue
            # --out may be a broad folder (".") holding a framework's cache: only what parity
            # writes there (a report, a baseline, a tiny model's files) is the user's path
            depth = 2 if option == "out" else None
            files = (exc.filename, exc.filename2)
            named = [f for f in files if _concerns(f, Path(value), depth=depth)]
            if named:
                path = os.fsdecode(named[0])
                reason = os_reason(exc)
                if isinstance(exc, (FileExistsError, NotADirectoryError)) and Path(path).is_file():
                    reason = "is a file where a directory is needed"  # mkdir says "File exists"
                raise ParityInputError(f"{path}: {reason} (from --{option} {value})") from exc
        raise


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
    try:
        fd, name = tempfile.mkstemp(prefix="parity-error-", suffix=".log")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
    except OSError:  # nowhere to write (a full disk): the traceback goes to stderr instead
        print(text, file=sys.stderr, end="")
        return Path("<stderr, above>")
    return Path(name)
