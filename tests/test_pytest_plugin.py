"""The plugin end to end, through pytester: a user's test file on matched and mismatched stacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).parent.parent / "examples" / "test_embedding_parity.py"

USER_TEST = """
import pytest

@pytest.mark.parity
def test_edges(assert_parity):
    assert_parity(["plain text", " hello", "hello world"])
"""


def run_pytest(pytester: pytest.Pytester, model: Path, *adapters: str) -> pytest.RunResult:
    """Run the pytester directory's tests against `model` with these adapter specs."""
    args = ["--parity-model", str(model), "-p", "no:cacheprovider"]
    for spec in adapters:
        args += ["--parity-adapter", spec]
    return pytester.runpytest(*args)


def test_plugin_import_does_not_load_torch() -> None:
    code = "import sys, parity.pytest_plugin; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_help_lists_the_option_group(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(["*embedding parity (parity)*", "*--parity-adapter=SPEC*"])


def test_matched_adapters_pass(pytester: pytest.Pytester, bpe_model: Path) -> None:
    pytester.makepyfile(test_user=USER_TEST)
    pytester.copy_example(str(EXAMPLE))
    result = pytester.runpytest(
        "--parity-model", str(bpe_model), "--parity-profile", "ci", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=5)
    assert not (pytester.path / "fixtures" / "regressions.jsonl").exists()


def test_mismatched_adapters_fail_with_cause_metrics_and_tokens(
    pytester: pytest.Pytester, bpe_model: Path
) -> None:
    pytester.makepyfile(test_user=USER_TEST)
    result = run_pytest(pytester, bpe_model, "sentence-transformers", "custom:strip=true")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*sentence-transformers vs custom:strip=true: 1 of 3 texts differ beyond tolerance*",
            "*top cause: strip: custom:strip=true strips edge whitespace before tokenizing*"
            "Fix: set strip=false on custom:strip=true*",
            "*worst text: ' hello'*",
            "*euclidean obtained * tolerance 0.005  FAIL*",
        ]
    )
    out = result.stdout.str()
    assert "tokens sentence-transformers: ['<s>', 'Ġhello', '</s>']" in out
    assert "tokens custom:strip=true: ['<s>', 'he', 'l', 'lo', '</s>']" in out
    assert "def check" not in result.stdout.str()  # __tracebackhide__
    records = [
        json.loads(line)
        for line in (pytester.path / "fixtures" / "regressions.jsonl").read_text().splitlines()
    ]
    assert [(r["text"], r["adapters"]) for r in records] == [
        (" hello", ["sentence-transformers", "custom:strip=true"])
    ]


def test_regressions_are_replayed_first(pytester: pytest.Pytester, bpe_model: Path) -> None:
    fixtures = pytester.path / "fixtures"
    fixtures.mkdir()
    (fixtures / "regressions.jsonl").write_text(
        json.dumps(
            {
                "text": "line one\nline two",
                "adapters": ["a", "b"],
                "metrics": {},
                "date": "2026-11-28",
            }
        )
        + "\n"
    )
    pytester.makepyfile(
        test_plain="""
def test_plain(assert_parity):
    assert_parity(["no newline here"])
"""
    )
    result = run_pytest(pytester, bpe_model, "sentence-transformers", "langchain")
    result.assert_outcomes(failed=1, passed=1)  # the replay is its own item, test_plain passes
    result.stdout.fnmatch_lines(
        [
            "*known regression (replayed first from regressions.jsonl)*",
            "*top cause: newline*",
            "FAILED *fixtures/regressions.jsonl::parity-regressions*",
        ]
    )
