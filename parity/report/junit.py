"""JUnit XML (--junit FILE): one testcase per pair, as CI test-report readers expect them."""

from __future__ import annotations

import re
import socket
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from parity.errors import ParityInputError
from parity.files import os_reason, write_atomic
from parity.metrics import METRICS
from parity.report.ci import verdict_failures

# The shape is the one Jenkins' junit plugin schema (junit-10.xsd, also read by GitLab, GitHub
# test-report actions and pytest's own --junitxml) defines: <testsuites> holding <testsuite
# name tests failures errors skipped time timestamp hostname>, each <testcase name classname
# time> holding at most one <failure message type> (or <error message type>) and a <system-out>.

# what XML 1.0 cannot hold even escaped (ElementTree writes it as is, and no reader parses the
# file back): C0 controls other than tab/newline/return, lone surrogates, U+FFFE and U+FFFF
ILLEGAL_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_safe(text: str) -> str:
    """The text with each character XML cannot hold written as its escape (\\x01, \\ud800)."""
    return ILLEGAL_XML.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def _element(parent: ET.Element, tag: str, text: str | None = None, **attrib: str) -> ET.Element:
    """A child whose attributes and text hold only characters XML allows."""
    element = ET.SubElement(parent, tag, {k: xml_safe(v) for k, v in attrib.items()})
    if text is not None:
        element.text = xml_safe(text)
    return element


def metric_lines(pair: dict[str, Any], tolerance: dict[str, Any]) -> str:
    """The pair's figures, one metric a line: its worst value against the tolerance."""
    lines = [f"{pair['a']} vs {pair['b']}: {pair['failures']} of {pair['n']} texts fail"]
    for metric in METRICS:
        worst = (pair.get("stats") or {}).get(metric, {}).get("max")
        limit = tolerance.get(metric)
        shown = "NaN" if worst is None else f"{worst:.4g}"
        verdict = (
            "off" if limit is None else ("ok" if worst is not None and worst <= limit else "FAIL")
        )
        lines.append(
            f"  {metric:13s} max {shown:>10s}  tolerance {'off' if limit is None else f'{limit:g}'}  {verdict}"
        )
    return "\n".join(lines) + "\n"


def failure_text(pair: dict[str, Any]) -> tuple[str, str]:
    """(message, type) of a failing pair: its top cause and the fix, or its worst metric."""
    causes = pair.get("causes") or []
    if causes:
        top = causes[0]
        name = "+".join([top["cause"], *top.get("also", [])])
        return (
            f"{name} ({top.get('evidence', 'measured')}): {top['detail']} Fix: {top['fix']}",
            name,
        )
    decided = {m: n for m, n in (pair.get("decided_by") or {}).items() if n}
    over = ", ".join(f"{m} on {n}" for m, n in decided.items()) or "a searched text diverges"
    return (
        f"{pair['failures']} of {pair['n']} texts beyond tolerance ({over}); not diagnosed",
        "parity",
    )


def _testcase(
    suite: ET.Element, classname: str, name: str, out: str, failure: tuple[str, str] | None
) -> None:
    case = _element(suite, "testcase", name=name, classname=classname, time="0")
    if failure is not None:
        message, kind = failure
        _element(case, "failure", message, message=message, type=kind)
    _element(case, "system-out", out)


def _gate_cases(suite: ET.Element, summary: dict[str, Any], classname: str) -> None:
    """The gate: each adapter against its baseline vectors, then each cross pair; a failure only
    where the gate's verdict comes from (ci.verdict_failures: drift, an nDCG@10 drop, a newly
    failing pair), and none once --update replaced the baseline (the command passed)."""
    baseline, tolerance = summary["baseline"], summary["tolerance"]
    failing = dict(verdict_failures(summary))  # name -> message; empty after --update
    updated = f"accepted: --update replaced the baseline ({baseline.get('updated')})\n"
    pairs = {p.get("adapter"): p for p in summary["pairs"] if p.get("kind") == "baseline"}
    for label, entry in baseline["adapters"].items():
        pair = pairs.get(label)
        out = metric_lines(pair, tolerance) if pair else f"{label}: {entry['failures']} drifted\n"
        name = f"{label} against the baseline"
        failure = None
        if name in failing and pair and entry["drifted"]:
            failure = failure_text(pair)
        if name in failing and label in baseline.get("ndcg_failures", []):
            drop = f"nDCG@10 dropped more than {baseline['max_ndcg_drop']:g} from the baseline"
            failure = (drop if failure is None else f"{failure[0]}; {drop}", "ranking")
        if name in failing and failure is None:  # drifted, with no pair in the summary
            failure = (failing[name], "drift")
        if baseline.get("updated") and (
            entry["drifted"] or label in baseline.get("ndcg_failures", [])
        ):
            out += updated
        _testcase(suite, classname, name, out, failure)
    for pair in (p for p in summary["pairs"] if p.get("kind") != "baseline"):
        name = f"{pair['a']} vs {pair['b']}"
        failure = failure_text(pair) if name in failing else None
        _testcase(suite, classname, name, metric_lines(pair, tolerance), failure)


def _document(title: str) -> tuple[ET.Element, ET.Element]:
    root = ET.Element("testsuites", name=xml_safe(title))
    suite = _element(
        root,
        "testsuite",
        name=title,
        timestamp=datetime.now(timezone.utc).replace(microsecond=0, tzinfo=None).isoformat(),
        hostname=socket.gethostname() or "localhost",
    )
    return root, suite


def _finish(root: ET.Element, suite: ET.Element, seconds: float) -> str:
    """Count the suite's testcases into its attributes and the root's; the document as text."""
    cases = suite.findall("testcase")
    failures = sum(case.find("failure") is not None for case in cases)
    errors = sum(case.find("error") is not None for case in cases)
    counts = {"tests": len(cases), "failures": failures, "errors": errors, "skipped": 0}
    for key, value in counts.items():
        suite.set(key, str(value))
    suite.set("time", f"{seconds:.3f}")
    for key in ("tests", "failures", "errors"):
        root.set(key, str(counts[key]))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def build_junit(summary: dict[str, Any], title: str = "parity run") -> str:
    """The JUnit XML document of a summary.json dict."""
    classname = title.replace(" ", ".")
    root, suite = _document(title)
    if summary.get("baseline"):
        _gate_cases(suite, summary, classname)
    else:
        for pair in summary["pairs"]:
            failure = None if pair["passed"] else failure_text(pair)
            name = f"{pair['a']} vs {pair['b']}"
            _testcase(suite, classname, name, metric_lines(pair, summary["tolerance"]), failure)
    return _finish(root, suite, float(summary.get("diagnosis_seconds") or 0))


def build_error_junit(title: str, error: str) -> str:
    """The JUnit XML of a command that ended in an error (exit 2 or 3): one testcase holding an
    <error> with the error line, so CI shows this run's failure, not an earlier run's cases."""
    root, suite = _document(title)
    case = _element(suite, "testcase", name=title, classname=title.replace(" ", "."), time="0")
    kind = "internal error" if error.startswith("internal error") else "error"
    _element(case, "error", error, message=error, type=kind)
    return _finish(root, suite, 0.0)


def write_junit(path: Path, summary: dict[str, Any], title: str = "parity run") -> Path:
    """Write the JUnit XML atomically; an unwritable path is the user's to fix."""
    try:
        write_atomic(path, build_junit(summary, title))
    except OSError as exc:
        raise ParityInputError(
            f"{exc.filename or path}: cannot write the JUnit XML: {os_reason(exc)}; "
            "give --junit a writable file path"
        ) from exc
    return path


def write_error_junit(path: Path, title: str, error: str) -> None:
    """Replace the --junit file with build_error_junit's; a path that cannot be written is left
    removed if it can be (the error line already says what went wrong)."""
    try:
        write_atomic(path, build_error_junit(title, error))
    except OSError:
        try:  # at least no earlier run's passing testcases
            path.unlink(missing_ok=True)
        except OSError:
            pass
