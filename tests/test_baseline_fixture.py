"""The `parity_baseline` fixture through pytester, following pytest-regressions' convention."""

from __future__ import annotations

from pathlib import Path

import pytest

USER_TEST = """
def test_vectors(parity_baseline):
    parity_baseline([" hello", "world ", "plain text"])
"""


def run(pytester: pytest.Pytester, model: Path, *args: str) -> pytest.RunResult:
    return pytester.runpytest(
        "--parity-model", str(model), "--parity-adapter", "custom", "-p", "no:cacheprovider", *args
    )


def test_missing_baseline_is_written_and_fails_once_then_passes(
    pytester: pytest.Pytester, bpe_model: Path
) -> None:
    pytester.makepyfile(test_user=USER_TEST)
    where = pytester.path / "test_user" / "test_vectors"
    result = run(pytester, bpe_model)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            f"*parity baseline {where} did not exist: recorded 3 texts with custom. Commit it and rerun.*"
        ]
    )
    assert (where / "manifest.json").is_file() and (where / "custom.npz").is_file()
    run(pytester, bpe_model).assert_outcomes(passed=1)


def test_drift_fails_with_obtained_expected_and_leaves_the_obtained_vectors(
    pytester: pytest.Pytester, bpe_model: Path
) -> None:
    pytester.makepyfile(test_user=USER_TEST)
    run(pytester, bpe_model)  # records the baseline
    where = pytester.path / "test_user" / "test_vectors"
    before = (where / "custom.npz").read_bytes()
    # the same label with a stripping stack: the upgrade a baseline exists to catch
    result = pytester.runpytest(
        "--parity-model",
        str(bpe_model),
        "--parity-adapter",
        "custom:strip=true,label=custom",
        "-p",
        "no:cacheprovider",
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            f"*custom: 2 of 3 texts drifted from {where}*",
            "*worst text: *",
            "*euclidean obtained * tolerance 0.005  FAIL*",
            "*environment: unchanged*",
            f"*today's vectors are in {where}.obtained; if the change is intended, rerun with --parity-regen*",
        ]
    )
    assert (where / "custom.npz").read_bytes() == before
    assert (where.with_name("test_vectors.obtained") / "custom.npz").is_file()


def test_regen_rewrites_and_keeps_the_previous(pytester: pytest.Pytester, bpe_model: Path) -> None:
    pytester.makepyfile(test_user=USER_TEST)
    run(pytester, bpe_model)
    where = pytester.path / "test_user" / "test_vectors"
    result = run(pytester, bpe_model, "--parity-regen")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [f"*{where} regenerated (--parity-regen)*the previous one is kept in {where}.prev*"]
    )
    assert (where.with_name("test_vectors.prev") / "manifest.json").is_file()
    run(pytester, bpe_model).assert_outcomes(passed=1)


def test_a_damaged_baseline_fails_with_its_one_line(
    pytester: pytest.Pytester, bpe_model: Path
) -> None:
    pytester.makepyfile(test_user=USER_TEST)
    run(pytester, bpe_model)
    where = pytester.path / "test_user" / "test_vectors"
    (where / "manifest.json").write_text("{")
    result = run(pytester, bpe_model)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"*{where}/manifest.json: malformed JSON at line 1 column 2*"])


def test_the_example_file_records_then_passes(pytester: pytest.Pytester, bpe_model: Path) -> None:
    example = Path(__file__).parent.parent / "examples" / "test_embedding_baseline.py"
    pytester.copy_example(str(example))
    first = run(pytester, bpe_model)
    first.assert_outcomes(failed=1)
    first.stdout.fnmatch_lines(["*did not exist: recorded 5 texts with custom*"])
    run(pytester, bpe_model).assert_outcomes(passed=1)
