"""JUnit XML: one testcase per pair (per adapter against its baseline for the gate), checked
against the structure of the JUnit schema CI readers use (Jenkins xunit-plugin junit-10.xsd)."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from parity.cli import main
from parity.cli.parser import build_parser
from parity.report.junit import build_junit

# junit-10.xsd (jenkinsci/xunit-plugin, src/main/resources/.../xsd/junit-10.xsd; pytest keeps a
# copy in testing/example_scripts), transcribed: per element, the attributes it allows, those it
# requires, and the child elements it allows. No XSD validator (lxml, xmlschema) is installed
# here, so these rules are checked with xml.etree. SUREFIRE_TIME is the schema's pattern for
# `time` (at most 3 decimals), checked on every element that has one, testcases included.
SCHEMA: dict[str, tuple[set[str], set[str], set[str]]] = {
    "testsuites": ({"name", "time", "tests", "failures", "errors"}, set(), {"testsuite"}),
    "testsuite": (
        {"name", "tests", "failures", "errors", "group", "time", "skipped", "timestamp"}
        | {"hostname", "id", "package", "file", "log", "url"},
        {"name", "tests", "failures", "errors"},
        {"testsuite", "properties", "testcase", "system-out", "system-err"},
    ),
    "testcase": (
        {"name", "time", "classname", "group"},
        {"name"},
        {"skipped", "error", "failure", "system-out", "system-err"},
    ),
    "failure": ({"type", "message"}, set(), set()),
    "error": ({"type", "message"}, set(), set()),
    "system-out": (set(), set(), set()),
}
# the child order of the schema's sequences (junit-10's older releases and junit-4.xsd, which
# stricter readers still apply; the newest junit-10 allows any order, so this one fits both)
ORDER = {
    "testsuites": ["testsuite"],
    "testsuite": ["testsuite", "properties", "testcase", "system-out", "system-err"],
    "testcase": ["skipped", "error", "failure", "system-out", "system-err"],
}
SUREFIRE_TIME = re.compile(r"(([0-9]{0,3},)*[0-9]{3}|[0-9]{0,3})*(\.[0-9]{0,3})?")


def validate(xml: str) -> ET.Element:
    """Parse and check every element against SCHEMA and ORDER; return the root."""
    root = ET.fromstring(xml)
    assert root.tag == "testsuites"
    for element in root.iter():
        allowed, required, children = SCHEMA[element.tag]
        assert set(element.attrib) <= allowed, (element.tag, element.attrib)
        assert required <= set(element.attrib), (element.tag, element.attrib)
        assert {child.tag for child in element} <= children, element.tag
        ranks = [ORDER[element.tag].index(child.tag) for child in element]
        assert ranks == sorted(ranks), (element.tag, [child.tag for child in element])
        if "time" in element.attrib:
            assert SUREFIRE_TIME.fullmatch(element.attrib["time"]), element.attrib["time"]
    for suite in root.iter("testsuite"):
        cases = suite.findall("testcase")
        assert int(suite.attrib["tests"]) == len(cases)
        assert int(suite.attrib["failures"]) == sum(c.find("failure") is not None for c in cases)
        assert int(suite.attrib["errors"]) == sum(c.find("error") is not None for c in cases)
    return root


def _pair(a: str, b: str, failures: int, **extra: Any) -> dict[str, Any]:
    stats = {m: {"max": 0.448 if failures else 1e-7} for m in ("max_abs", "cosine", "euclidean")}
    stats["rel_euclidean"] = {"max": None}
    pair = {"a": a, "b": b, "n": 120, "failures": failures, "passed": not failures}
    return pair | {"stats": stats, "decided_by": {"euclidean": failures}, "causes": []} | extra


TRUNCATION = {
    "cause": "truncation",
    "also": [],
    "detail": "bce truncates at 512 tokens, st at 256.",
    "fix": "set max_length=256 on bce",
    "evidence": "measured",
}
TOLERANCE = {"max_abs": 5e-3, "cosine": 5e-3, "euclidean": 5e-3}


def test_run_has_one_testcase_per_pair_failing_with_the_top_cause_and_fix() -> None:
    summary = {
        "tolerance": TOLERANCE,
        "pairs": [_pair("st", "custom", 0), _pair("st", "bce", 20, causes=[TRUNCATION])],
    }
    root = validate(build_junit(summary, "parity run"))
    cases = root.findall("testsuite/testcase")
    assert [c.attrib["name"] for c in cases] == ["st vs custom", "st vs bce"]
    assert cases[0].find("failure") is None
    failure = cases[1].find("failure")
    assert failure is not None
    assert failure.attrib["message"] == (
        "truncation (measured): bce truncates at 512 tokens, st at 256. "
        "Fix: set max_length=256 on bce"
    )
    out = cases[1].findtext("system-out") or ""
    assert "st vs bce: 20 of 120 texts fail" in out
    assert re.search(r"euclidean\s+max\s+0.448\s+tolerance 0.005\s+FAIL", out)
    assert re.search(r"rel_euclidean\s+max\s+NaN\s+tolerance off\s+off", out)


def test_gate_has_a_testcase_per_adapter_and_fails_only_new_cross_failures() -> None:
    baseline = {
        "adapters": {
            "st": {"drifted": False, "failures": 0, "n": 120},
            "bce": {"drifted": True, "failures": 20, "n": 120},
        },
        "newly_failing_pairs": ["st vs bce"],
        "ndcg_failures": [],
        "max_ndcg_drop": 0.01,
    }
    pairs = [
        _pair("st@baseline", "st", 0, kind="baseline", adapter="st"),
        _pair("bce@baseline", "bce", 20, kind="baseline", adapter="bce", causes=[TRUNCATION]),
        _pair("st", "bce", 20, kind="cross"),
        _pair("st", "custom", 3, kind="cross"),  # failed at the baseline too: reported, not failed
    ]
    summary = {"tolerance": TOLERANCE, "pairs": pairs, "baseline": baseline}
    root = validate(build_junit(summary, "parity gate"))
    cases = {c.attrib["name"]: c.find("failure") for c in root.iter("testcase")}
    assert list(cases) == [
        "st against the baseline",
        "bce against the baseline",
        "st vs bce",
        "st vs custom",
    ]
    assert cases["st against the baseline"] is None and cases["st vs custom"] is None
    assert cases["bce against the baseline"].attrib["type"] == "truncation"  # type: ignore[union-attr]
    assert cases["st vs bce"].attrib["message"].startswith("20 of 120 texts beyond tolerance")  # type: ignore[union-attr]
    assert root.find("testsuite").attrib["failures"] == "2"  # type: ignore[union-attr]


@pytest.mark.parametrize("command", ["run", "diagnose", "fuzz", "gate"])
def test_junit_and_csv_are_options_of_every_reporting_command(command: str) -> None:
    argv = [command, "--junit", "out.xml", "--csv"]
    if command == "gate":
        argv += ["--baseline", "b"]
    args = build_parser().parse_args(argv)
    assert args.junit == "out.xml" and args.csv is True


@pytest.mark.slow
def test_parity_run_writes_junit_that_agrees_with_summary(bpe_model: Path, tmp_path: Path) -> None:
    texts = tmp_path / "texts.jsonl"
    texts.write_text("".join(json.dumps({"text": t}) + "\n" for t in ["a b", "c\nd"]))
    junit = tmp_path / "ci" / "parity.xml"
    argv = ["run", "--model", str(bpe_model), "--texts", str(texts), "--quiet", "--no-retrieval"]
    argv += ["--adapter", "sentence-transformers", "--adapter", "langchain", "--out"]
    assert main([*argv, str(tmp_path / "out"), "--junit", str(junit)]) == 1
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    root = validate(junit.read_text())
    (case,) = root.iter("testcase")
    assert case.attrib["name"] == "sentence-transformers vs langchain"
    top = summary["pairs"][0]["causes"][0]
    failure = case.find("failure")
    assert failure is not None and failure.attrib["type"] == top["cause"] == "newline"
    assert f"Fix: {top['fix']}" in failure.attrib["message"]


@pytest.mark.slow
def test_parity_gate_writes_a_testcase_per_adapter_and_cross_pair(
    bpe_model: Path, tmp_path: Path
) -> None:
    texts = tmp_path / "texts.jsonl"
    texts.write_text("".join(json.dumps({"text": t}) + "\n" for t in ["a b", "c\nd"]))
    baseline = tmp_path / "baseline"
    adapters = ["--adapter", "custom", "--adapter", "langchain"]
    common = ["--model", str(bpe_model), "--quiet", *adapters]
    create = ["baseline", "create", *common, "--texts", str(texts), "--out", str(baseline)]
    assert main([*create, "--no-retrieval"]) == 0
    junit = tmp_path / "gate.xml"
    assert main(["gate", "--baseline", str(baseline), *common, "--junit", str(junit)]) == 0
    root = validate(junit.read_text())
    cases = {c.attrib["name"]: c for c in root.iter("testcase")}
    assert list(cases) == [
        "custom against the baseline",
        "langchain against the baseline",
        "custom vs langchain",
    ]
    # the cross pair differs (newline) but did so when the baseline was made: reported, not failed
    assert all(case.find("failure") is None for case in cases.values())
    assert "custom vs langchain: 1 of 2 texts fail" in (
        cases["custom vs langchain"].findtext("system-out") or ""
    )
    assert root.attrib["failures"] == "0" and root.attrib["tests"] == "3"


def _gate_summary(**baseline: Any) -> dict[str, Any]:
    """A gate over st and bce: bce drifted from its baseline, and st vs bce fails (as it did
    when the baseline was made, unless newly_failing_pairs says otherwise)."""
    section = {
        "adapters": {
            "st": {"drifted": False, "failures": 0, "n": 120},
            "bce": {"drifted": True, "failures": 20, "n": 120},
        },
        "newly_failing_pairs": [],
        "ndcg_failures": [],
        "max_ndcg_drop": 0.005,
        "updated": None,
    } | baseline
    pairs = [
        _pair("st@baseline", "st", 0, kind="baseline", adapter="st"),
        _pair("bce@baseline", "bce", 20, kind="baseline", adapter="bce", causes=[TRUNCATION]),
        _pair("st", "bce", 20, kind="cross", causes=[TRUNCATION]),
    ]
    return {"tolerance": TOLERANCE, "pairs": pairs, "baseline": section}


def test_gate_update_reports_the_drift_but_fails_nothing_as_the_command_passes() -> None:
    summary = _gate_summary(updated="baselines/main", newly_failing_pairs=["st vs bce"])
    summary["passed"] = True  # what cmd_gate does with --update: exit 0, "UPDATED"
    root = validate(build_junit(summary, "parity gate"))
    assert root.attrib["failures"] == "0" and root.attrib["tests"] == "3"
    bce = next(c for c in root.iter("testcase") if c.attrib["name"] == "bce against the baseline")
    assert "accepted: --update replaced the baseline (baselines/main)" in (
        bce.findtext("system-out") or ""
    )


def test_gate_junit_failures_are_what_decides_the_verdict() -> None:
    root = validate(build_junit(_gate_summary(ndcg_failures=["st"]), "parity gate"))
    failures = {
        c.attrib["name"]: f.attrib["message"]
        for c in root.iter("testcase")
        if (f := c.find("failure")) is not None
    }
    assert list(failures) == ["st against the baseline", "bce against the baseline"]
    assert failures["st against the baseline"] == (
        "nDCG@10 dropped more than 0.005 from the baseline"
    )
    assert failures["bce against the baseline"].startswith("truncation (measured): bce trunc")
    passing = _gate_summary(adapters={"st": {"drifted": False, "failures": 0, "n": 120}})
    passing["pairs"] = [p for p in passing["pairs"] if p.get("adapter") != "bce"]
    assert validate(build_junit(passing, "parity gate")).attrib["failures"] == "0"


def test_control_characters_in_labels_and_texts_are_escaped_so_the_file_parses() -> None:
    cause = TRUNCATION | {"detail": "text 'a\x01b\x0bc' differs\x00"}
    summary = {"tolerance": TOLERANCE, "pairs": [_pair("st", "b\x1fce", 3, causes=[cause])]}
    root = validate(build_junit(summary, "parity run"))  # ET.fromstring raised before
    (case,) = root.iter("testcase")
    assert case.attrib["name"] == "st vs b\\x1fce"
    failure = case.find("failure")
    assert failure is not None
    assert "text 'a\\x01b\\x0bc' differs\\x00" in failure.attrib["message"]
    assert "text 'a\\x01b\\x0bc' differs\\x00" in (failure.text or "")
    assert "st vs b\\x1fce: 3 of 120 texts fail" in (case.findtext("system-out") or "")


def test_the_checker_rejects_children_out_of_the_schemas_order() -> None:
    case = '<testcase name="x" time="0"><system-out>o</system-out><failure message="m"/></testcase>'
    bad = f'<testsuites><testsuite name="s" tests="1" failures="1" errors="0">{case}</testsuite></testsuites>'
    with pytest.raises(AssertionError, match="system-out"):
        validate(bad)
    with pytest.raises(AssertionError, match=r"0\.1234"):
        validate(bad.replace('time="0"', 'time="0.1234"').replace("<system-out>o</system-out>", ""))


def test_an_input_error_replaces_an_earlier_junit_file_with_an_error_testcase(
    bpe_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    junit = tmp_path / "parity.xml"
    summary = {"tolerance": TOLERANCE, "pairs": [_pair("custom", "langchain", 0)]}
    junit.write_text(build_junit(summary))  # an earlier run's passing testcase
    argv = ["run", "--model", str(bpe_model), "--texts", str(tmp_path / "missing.jsonl")]
    argv += ["--adapter", "custom", "--adapter", "langchain", "--junit", str(junit)]
    assert main(argv) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    root = validate(junit.read_text())
    assert root.attrib["tests"] == "1" and root.attrib["errors"] == "1"
    assert root.attrib["failures"] == "0"
    (case,) = root.iter("testcase")
    assert case.attrib["name"] == "parity run"
    error = case.find("error")
    assert error is not None and error.attrib["type"] == "error"
    assert error.attrib["message"] == line.removeprefix("parity: ")
    assert "missing.jsonl" in error.attrib["message"]


@pytest.mark.slow
def test_gate_junit_and_annotations_agree_with_the_exit_code_with_and_without_update(
    bpe_model: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    edge = ["  hello world", "hello world  ", "\tfoo bar\n", "plain text", " x ", "tail\n"]
    texts = tmp_path / "edge.jsonl"
    texts.write_text("".join(json.dumps(t) + "\n" for t in edge))
    baseline, junit = tmp_path / "base", tmp_path / "gate.xml"
    create = ["baseline", "create", "--model", str(bpe_model), "--texts", str(texts), "--quiet"]
    assert main([*create, "--adapter", "custom:strip=true", "--out", str(baseline)]) == 0
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    gate = ["gate", "--baseline", str(baseline), "--adapter", "custom", "--quiet"]
    assert main([*gate, "--junit", str(junit)]) == 1  # custom no longer strips: drifted
    root = validate(junit.read_text())
    assert root.attrib["failures"] == "1"
    assert "::error title=parity%3A custom against the baseline::" in capsys.readouterr().err
    assert main([*gate, "--junit", str(junit), "--update"]) == 0
    root = validate(junit.read_text())
    assert root.attrib["failures"] == "0" and root.attrib["tests"] == "1"
    assert "::error" not in capsys.readouterr().err
