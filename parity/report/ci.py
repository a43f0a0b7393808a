"""CI summaries: the verdict, pair table and causes appended to GitHub's job summary, and an
`::error` annotation per failing pair; nothing outside GitHub Actions."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from parity.report.markdown import pairs_table, plural, verdict_text


def step_summary(summary: dict[str, Any], title: str) -> str:
    """The markdown appended to $GITHUB_STEP_SUMMARY: verdict, pair table, causes."""
    lines = [f"## {title}", "", f"**{verdict_text(summary)}**", *pairs_table(summary["pairs"])]
    causes = [(p, c) for p in summary["pairs"] for c in p.get("causes") or []]
    if causes:
        lines += ["", "### Causes", ""]
        for pair, cause in causes:
            name = "+".join([cause["cause"], *cause.get("also", [])])
            lines.append(
                f"- {pair['a']} vs {pair['b']}: **{name}** ({cause.get('evidence', 'measured')}, "
                f"{plural(cause['explained'], 'text')}): {cause['detail']} Fix: {cause['fix']}"
            )
    return "\n".join(lines) + "\n\n"


def _escape(text: str, *, prop: bool = False) -> str:
    """GitHub's workflow-command escaping (actions/toolkit command.ts escapeData/escapeProperty)."""
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return text.replace(":", "%3A").replace(",", "%2C") if prop else text


def _pair_message(pair: dict[str, Any]) -> str:
    message = f"{pair['failures']} of {pair['n']} texts beyond tolerance"
    if pair.get("causes"):
        top = pair["causes"][0]
        message += f"; {top['cause']}: {top['detail']} Fix: {top['fix']}"
    return message


def verdict_failures(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """(name, message) of each failure behind the verdict: every failing pair of a run; for the
    gate only what decides it (an adapter that drifted or lost nDCG@10, a cross pair that passed
    at baseline time and fails now), and nothing once --update replaced the baseline."""
    pairs = summary["pairs"]
    baseline = summary.get("baseline")
    if not baseline:
        return [(f"{p['a']} vs {p['b']}", _pair_message(p)) for p in pairs if not p["passed"]]
    if baseline.get("updated"):  # the command accepted the drift and passed (exit 0)
        return []
    drift = {p.get("adapter"): p for p in pairs if p.get("kind") == "baseline"}
    found = []
    for label, entry in baseline["adapters"].items():
        parts = []
        if entry["drifted"]:
            pair = drift.get(label)
            parts.append(_pair_message(pair) if pair else f"{entry['failures']} texts drifted")
        if label in baseline.get("ndcg_failures", []):
            drop = baseline["max_ndcg_drop"]
            parts.append(f"nDCG@10 dropped more than {drop:g} from the baseline")
        if parts:
            found.append((f"{label} against the baseline", "; ".join(parts)))
    newly = set(baseline.get("newly_failing_pairs", []))
    for pair in (p for p in pairs if p.get("kind") != "baseline"):
        name = f"{pair['a']} vs {pair['b']}"
        if name in newly:
            found.append((name, "passed at baseline time, fails now: " + _pair_message(pair)))
    return found


def error_annotations(summary: dict[str, Any]) -> list[str]:
    """One `::error` line per failure behind the verdict (see verdict_failures)."""
    return [
        f"::error title={_escape('parity: ' + name, prop=True)}::{_escape(message)}"
        for name, message in verdict_failures(summary)
    ]


def publish(
    summary: dict[str, Any],
    title: str,
    env: Mapping[str, str] | None = None,
    stream: TextIO | None = None,
) -> None:
    """Append the job summary when GITHUB_STEP_SUMMARY is set, and print the annotations when
    GITHUB_ACTIONS is "true". Annotations go to stderr: the runner reads workflow commands from
    both streams, and stdout stays the verdict line scripts parse."""
    env = os.environ if env is None else env
    path = env.get("GITHUB_STEP_SUMMARY")
    if path:
        try:
            with Path(path).open("a", encoding="utf-8") as handle:
                handle.write(step_summary(summary, title))
        except OSError as exc:
            print(f"parity: cannot append the job summary to {path}: {exc}", file=sys.stderr)
    if env.get("GITHUB_ACTIONS") == "true":
        for line in error_annotations(summary):
            print(line, file=stream or sys.stderr, flush=True)
