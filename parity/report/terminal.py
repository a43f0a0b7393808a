"""The terminal: a tqdm bar while an adapter embeds (when stderr is a TTY) and the closing table."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any, TextIO

from tqdm import tqdm

from parity.runner import Progress

# the step lines runner.embed_specs/embed_all print, which the bar replaces
EMBEDDING = re.compile(r"^(?P<label>.+): embedding (?P<total>\d+) texts$")
CHUNK_DONE = re.compile(r"^(?P<label>.+): (?P<done>\d+)/(?P<total>\d+) texts$")


class BarProgress(Progress):
    """Progress for a terminal: each adapter's embedding is a tqdm bar (advanced per chunk);
    every other step is a line printed above it."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self.bar: tqdm[Any] | None = None

    def __call__(self, message: str) -> None:
        started, done = EMBEDDING.match(message), CHUNK_DONE.match(message)
        if done and self.bar is not None:
            self.bar.update(int(done["done"]) - self.bar.n)
            return
        self.close()
        super().__call__(message)
        if started:
            self.bar = tqdm(
                total=int(started["total"]),
                desc=started["label"],
                unit="text",
                file=self.stream,
                leave=False,
                dynamic_ncols=True,
                mininterval=0,  # updates come once per CHUNK texts: show each one
                miniters=1,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def progress_for(stream: TextIO | None = sys.stderr, *, quiet: bool = False) -> Progress:
    """A bar on a terminal, plain step lines otherwise (a log, a pipe), nothing when quiet."""
    if quiet or stream is None:
        return Progress(None)
    isatty = getattr(stream, "isatty", None)
    return BarProgress(stream) if callable(isatty) and isatty() else Progress(stream)


def _worst(pair: dict[str, Any], tolerance: dict[str, Any]) -> str:
    """The metric furthest over (or closest to) its tolerance: 'euclidean 0.448 > 0.005'."""
    ratios = []
    for metric, limit in tolerance.items():
        value = (pair.get("stats") or {}).get(metric, {}).get("max")
        if value is None:
            return f"{metric} NaN"
        ratios.append((value / limit if limit else float("inf"), metric, value, limit))
    if not ratios:
        return "-"
    _, metric, value, limit = max(ratios)
    return f"{metric} {value:.3g} {'>' if value > limit else '<='} {limit:g}"


def final_table(summary: dict[str, Any], out: str | None) -> str:
    """Pairs, worst metric against tolerance, failing texts, top cause; then report.html."""
    rows = [("pair", "worst vs tolerance", "failing", "top cause")]
    for pair in summary["pairs"]:
        causes = pair.get("causes") or []
        top = f"{causes[0]['cause']} ({causes[0].get('evidence', 'measured')})" if causes else "-"
        failing = f"{pair['failures']}/{pair['n']}"
        rows.append(
            (f"{pair['a']} vs {pair['b']}", _worst(pair, summary["tolerance"]), failing, top)
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    if out:
        lines.append(f"report: {Path(out) / 'report.html'}")
    return "\n".join(lines)
