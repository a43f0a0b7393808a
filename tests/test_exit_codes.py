"""Exit codes are a contract: 0 pass, 1 a finding, 2 bad input, 3 an internal error (with its
traceback in error.log); the verdict line, summary.json and the exit code always agree."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

from parity.adapters import Adapter
from parity.cli import main

INTERNAL = re.compile(
    r"^parity: internal error: (\w+): (.*) \(traceback in (.+)\)\n$",
)


def _texts(tmp_path: Path, texts: list[str]) -> Path:
    path = tmp_path / "texts.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    return path


def _run(model: Path, texts: Path, *args: str) -> list[str]:
    argv = ["run", "--model", str(model), "--texts", str(texts), "--quiet", "--no-retrieval"]
    return argv + list(args)


def _boom(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("boom\nsecond line")


def _internal_error(err: str) -> tuple[str, str, Path]:
    """The one stderr line of an internal error: (exception type, message, traceback file)."""
    match = INTERNAL.match(err)
    assert match, err
    return match[1], match[2], Path(match[3])


def test_a_crash_in_describe_exits_3_with_the_traceback_in_out(
    bpe_model: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(Adapter, "describe", _boom)
    out = tmp_path / "out"
    argv = _run(bpe_model, _texts(tmp_path, ["hello"]), "--out", str(out))
    code = main([*argv, "--adapter", "custom", "--adapter", "sentence-transformers"])
    assert code == 3
    kind, message, log = _internal_error(capsys.readouterr().err)
    assert (kind, message, log) == ("RuntimeError", "boom second line", out / "error.log")
    logged = log.read_text()
    assert "Traceback (most recent call last)" in logged
    assert "in _boom" in logged and "RuntimeError: boom" in logged
    assert logged.startswith("parity 0.1.0 on Python ")
    # no verdict for a run that did not finish: summary.json says it failed, and why
    summary = json.loads((out / "summary.json").read_text())
    assert summary["passed"] is False and summary["exit_code"] == 3
    assert (
        summary["error"] == f"internal error: RuntimeError: boom second line (traceback in {log})"
    )
    assert not (out / "report.md").exists()


def test_a_crash_in_tokenize_exits_3(
    bpe_model: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from parity.adapters.langchain import LangChainAdapter
    from parity.adapters.sbert import SentenceTransformersAdapter

    for cls in (SentenceTransformersAdapter, LangChainAdapter):
        monkeypatch.setattr(cls, "tokenize", _boom)
    # a divergence (langchain's newline replacement), so diagnosis tokenizes too
    texts = _texts(tmp_path, ["line one\nline two", "plain"])
    out = tmp_path / "out"
    argv = _run(bpe_model, texts, "--out", str(out), "--tol", "euclidean=1e-2")
    code = main([*argv, "--adapter", "sentence-transformers", "--adapter", "langchain"])
    assert code == 3
    assert _internal_error(capsys.readouterr().err)[2] == out / "error.log"
    assert "in _boom" in (out / "error.log").read_text()


def test_a_crash_in_diagnosis_exits_3_never_1(
    bpe_model: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import parity.diagnose

    monkeypatch.setattr(parity.diagnose, "diagnose_run", _boom)
    texts = _texts(tmp_path, ["line one\nline two", "plain"])
    argv = _run(bpe_model, texts, "--tol", "euclidean=1e-2")  # no --out: a temp file
    code = main([*argv, "--adapter", "sentence-transformers", "--adapter", "langchain"])
    assert code == 3
    captured = capsys.readouterr()
    assert "parity: FAIL" not in captured.out  # a crash must not read as drift
    _, _, log = _internal_error(captured.err)
    assert log.name.startswith("parity-error-") and log.suffix == ".log"
    assert Path(log).parent == Path(__import__("tempfile").gettempdir())
    assert "in _boom" in log.read_text()
    log.unlink()


def test_a_crash_in_the_gate_exits_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import parity.gate

    def lookup(*args: Any, **kwargs: Any) -> Any:
        return {}["manifest"]

    monkeypatch.setattr(parity.gate, "run_gate", lookup)
    out = tmp_path / "gate"
    code = main(["gate", "--baseline", str(tmp_path / "b"), "--out", str(out), "--quiet"])
    assert code == 3
    kind, message, log = _internal_error(capsys.readouterr().err)
    assert (kind, message, log) == ("KeyError", "'manifest'", out / "error.log")
    assert "KeyError: 'manifest'" in log.read_text()


def test_debug_reraises_before_or_after_the_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import parity.gate

    monkeypatch.setattr(parity.gate, "run_gate", _boom)
    argv = ["gate", "--baseline", str(tmp_path / "b"), "--quiet"]
    with pytest.raises(RuntimeError, match="boom"):
        main(["--debug", *argv])
    with pytest.raises(RuntimeError, match="boom"):
        main([*argv, "--debug"])


def test_input_errors_stay_exit_2_under_debug(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--debug", "gate", "--baseline", str(tmp_path / "missing"), "--quiet"])
    assert code == 2
    assert capsys.readouterr().err.startswith("parity: error: ")


def test_an_internal_error_in_a_subprocess_is_one_line_and_exit_3(tmp_path: Path) -> None:
    wrapper = (
        "import sys, parity.gate\n"
        "def boom(*a, **k): raise ZeroDivisionError('division by zero')\n"
        "parity.gate.run_gate = boom\n"
        "from parity.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    out = tmp_path / "gate"
    result = subprocess.run(
        [sys.executable, "-c", wrapper, "gate", "--baseline", "b", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 3
    assert result.stderr == (
        "parity: internal error: ZeroDivisionError: division by zero "
        f"(traceback in {out / 'error.log'})\n"
    )
    assert "Traceback" in (out / "error.log").read_text()


def _fake_fuzz(bpe_model: Path, batch_dependent: bool) -> Any:
    """A fuzz_run whose re-embedded texts all pass, but whose search found a minimal example."""

    def fuzz_run(specs: Any, **kwargs: Any) -> Any:
        from parity.runner import run

        result = run(specs, ["hello", "world"], model=bpe_model, keep_adapters=True)
        found = {
            "text": "hello",
            "max_abs": 0.5,
            "cosine": 0.1,
            "euclidean": 0.4,
            "batch_dependent": batch_dependent,
        }
        return result, {f"{specs[0].label}\t{specs[1].label}": found}

    return fuzz_run


def test_fuzz_verdict_summary_and_exit_code_agree(
    bpe_model: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import parity.search.fuzz

    monkeypatch.setattr(parity.search.fuzz, "fuzz_run", _fake_fuzz(bpe_model, True))
    out = tmp_path / "fuzz"
    argv = ["fuzz", "--model", str(bpe_model), "--out", str(out), "--quiet", "--seed", "1"]
    code = main([*argv, "--adapter", "custom", "--adapter", "custom:label=other"])
    line = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert code == 1
    assert line.startswith("parity: FAIL: 1 of 1 pair(s) differ: custom vs other (a text the")
    assert summary["passed"] is False
    assert summary["pairs"][0]["passed"] is False
    assert summary["pairs"][0]["failures"] == 0
    assert summary["pairs"][0]["minimal_failing"]["batch_dependent"] is True
    assert "**FAIL" in (out / "report.md").read_text()


def test_fuzz_passes_when_the_search_found_nothing(
    bpe_model: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import parity.search.fuzz

    def clean(specs: Any, **kwargs: Any) -> Any:
        result, found = _fake_fuzz(bpe_model, False)(specs)
        return result, dict.fromkeys(found)

    monkeypatch.setattr(parity.search.fuzz, "fuzz_run", clean)
    out = tmp_path / "fuzz"
    argv = ["fuzz", "--model", str(bpe_model), "--out", str(out), "--quiet", "--seed", "1"]
    assert main([*argv, "--adapter", "custom", "--adapter", "custom:label=other"]) == 0
    assert capsys.readouterr().out.startswith("parity: PASS: 1 pair(s)")
    assert json.loads((out / "summary.json").read_text())["passed"] is True


def test_every_warning_is_shown_once_and_recorded(
    bpe_model: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    describe = Adapter.describe

    def noisy(self: Adapter) -> dict[str, Any]:
        warnings.warn("Truncation was not\nexplicitly activated", UserWarning, stacklevel=1)
        warnings.warn("Truncation was not\nexplicitly activated", UserWarning, stacklevel=1)
        warnings.warn("`dtype` will change", FutureWarning, stacklevel=1)
        warnings.warn("an internal detail", DeprecationWarning, stacklevel=1)
        return describe(self)

    monkeypatch.setattr(Adapter, "describe", noisy)
    out = tmp_path / "out"
    argv = _run(bpe_model, _texts(tmp_path, ["hello"]), "--out", str(out))
    assert main([*argv, "--adapter", "custom", "--adapter", "sentence-transformers"]) == 0
    lines = [x for x in capsys.readouterr().err.splitlines() if x.startswith("parity: warning:")]
    assert lines == [
        "parity: warning: UserWarning: Truncation was not explicitly activated",
        "parity: warning: FutureWarning: `dtype` will change",
    ]
    assert json.loads((out / "summary.json").read_text())["warnings"] == [
        {"category": "UserWarning", "message": "Truncation was not\nexplicitly activated"},
        {"category": "FutureWarning", "message": "`dtype` will change"},
    ]
    # a second command in the same process shows its warnings again
    assert main([*argv, "--adapter", "custom", "--adapter", "sentence-transformers"]) == 0
    assert capsys.readouterr().err.count("parity: warning: UserWarning: Truncation") == 1


def test_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == "parity 0.1.0\n"


def test_gate_update_over_drift_passes_in_line_summary_and_exit_code(
    bpe_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    texts = tmp_path / "edge.jsonl"
    texts.write_text('"  hello world"\n"plain text"\n" x "\n', encoding="utf-8")
    base = tmp_path / "base"
    argv = ["baseline", "create", "--model", str(bpe_model), "--texts", str(texts)]
    assert main([*argv, "--out", str(base), "--adapter", "custom:strip=true", "--quiet"]) == 0
    capsys.readouterr()
    out = tmp_path / "gate"
    argv = ["gate", "--baseline", str(base), "--adapter", "custom", "--out", str(out), "--quiet"]
    code = main([*argv, "--update", "--no-diagnose"])
    line = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert code == 0
    assert line.startswith("parity gate: UPDATED: the replaced check: FAIL: custom drifted (2/3")
    assert summary["passed"] is True
    assert summary["baseline"]["passed"] is False  # the check it replaced, as it was
    # report.md's headline agrees with the line, summary["passed"] and the exit code
    report = (out / "report.md").read_text()
    headline = next(x for x in report.splitlines() if x.startswith("**"))
    assert headline == (
        "**UPDATED: today's vectors are the new baseline; "
        "the check they replaced: FAIL: drifted: custom**"
    )
    assert "FAIL" not in report.split(headline)[0]


class CrashingAdapter(Adapter):
    """A backend whose _embed raises, as a framework bug or an out-of-range max_length would."""

    name = "crashing"
    summary = "raises inside _embed"

    def _load(self) -> None:
        pass

    def _embed(self, texts: list[str]) -> Any:
        raise RuntimeError("index out of range in self")

    def _describe(self) -> dict[str, Any]:
        return {}


def _stale_pass(out: Path) -> None:
    """What an earlier, passing run left in --out."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text('{"passed": true, "pairs": []}\n', encoding="utf-8")
    (out / "report.md").write_text("# parity run\n\n**PASS: every pair is within tolerance**\n")
    (out / "report.html").write_text("<h1>PASS</h1>\n")
    (out / "results.parquet").write_bytes(b"PAR1 an earlier run's rows")
    (out / "results.csv").write_text("text_id,passed\n0,True\n")


def test_a_crash_inside_a_backends_embed_exits_3_naming_the_adapter(
    bpe_model: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from parity.adapters import REGISTRY

    monkeypatch.setitem(REGISTRY, "crashing", CrashingAdapter)
    out = tmp_path / "out"
    _stale_pass(out)
    argv = _run(bpe_model, _texts(tmp_path, ["hello"]), "--out", str(out))
    code = main([*argv, "--adapter", "custom", "--adapter", "crashing:label=broken"])
    assert code == 3
    kind, message, log = _internal_error(capsys.readouterr().err)
    assert kind == "AdapterCrash"
    assert message == (
        "adapter broken crashed while embedding: RuntimeError: index out of range in self"
    )
    assert log == out / "error.log"
    logged = log.read_text()
    assert "in _embed" in logged and "RuntimeError: index out of range in self" in logged
    assert "The above exception was the direct cause" in logged
    # the earlier run's PASS does not survive next to error.log
    summary = json.loads((out / "summary.json").read_text())
    assert summary["passed"] is False and summary["exit_code"] == 3
    assert summary["error"] == capsys_line_of(kind, message, log)
    for stale in ("report.md", "report.html", "results.parquet", "results.csv"):
        assert not (out / stale).exists(), stale


def capsys_line_of(kind: str, message: str, log: Path) -> str:
    return f"internal error: {kind}: {message} (traceback in {log})"


def test_a_model_directory_that_cannot_be_loaded_stays_exit_2(
    bpe_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(bpe_model, broken)
    for weights in [*broken.glob("*.safetensors"), *broken.glob("*.bin")]:
        weights.write_bytes(b"not weights")
    out = tmp_path / "out"
    _stale_pass(out)
    (out / "error.log").write_text("a traceback from an earlier crash\n")
    argv = _run(broken, _texts(tmp_path, ["hello"]), "--out", str(out))
    code = main([*argv, "--adapter", "custom", "--adapter", "sentence-transformers"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"parity: error: custom: cannot load a model from '{broken}' (")
    assert "check that --model points to a complete model directory" in err
    assert err.count("\n") == 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["passed"] is False and summary["exit_code"] == 2
    assert summary["error"] == err.strip().removeprefix("parity: ")
    assert not (out / "report.md").exists()
    assert not (out / "error.log").exists()  # this error wrote none: an old one would mislead


def test_an_input_error_replaces_a_stale_passing_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "gate"
    _stale_pass(out)
    code = main(["gate", "--baseline", str(tmp_path / "missing"), "--out", str(out), "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert summary == {
        "schema": 1,
        "passed": False,
        "error": err.strip().removeprefix("parity: "),
        "exit_code": 2,
        "tool_version": "0.1.0",
        "warnings": [],
    }
    assert not (out / "report.md").exists()


def test_an_oserror_from_a_framework_inside_describe_is_an_internal_error(
    bpe_model: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a PermissionError on a framework's own cache file is not about any path the user gave
    cache = tmp_path / "hf-cache" / "version.txt"

    def denied(self: Adapter) -> Any:
        raise PermissionError(13, "Permission denied", str(cache))

    monkeypatch.setattr(Adapter, "describe", denied)
    out = tmp_path / "out"
    argv = _run(bpe_model, _texts(tmp_path, ["hello"]), "--out", str(out))
    code = main([*argv, "--adapter", "custom", "--adapter", "sentence-transformers"])
    assert code == 3
    kind, message, log = _internal_error(capsys.readouterr().err)
    assert (kind, message, log) == (
        "PermissionError",
        f"[Errno 13] Permission denied: '{cache}'",
        out / "error.log",
    )
    assert "in denied" in log.read_text()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["exit_code"] == 3 and summary["schema"] == 1
    # --debug re-raises it, as every internal error
    with pytest.raises(PermissionError):
        main(["--debug", *argv, "--adapter", "custom", "--adapter", "sentence-transformers"])


def test_an_oserror_without_a_file_is_an_internal_error(
    bpe_model: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def timeout(self: Adapter) -> Any:
        raise TimeoutError("timed out")  # socket.timeout: an OSError naming no file

    monkeypatch.setattr(Adapter, "describe", timeout)
    argv = _run(bpe_model, _texts(tmp_path, ["hello"]), "--out", str(tmp_path / "out"))
    assert main([*argv, "--adapter", "custom", "--adapter", "sentence-transformers"]) == 3
    assert _internal_error(capsys.readouterr().err)[:2] == ("TimeoutError", "timed out")


def test_a_texts_file_that_does_not_exist_is_exit_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.jsonl"
    code = main(["run", "--texts", str(missing), "--adapter", "custom", "--adapter", "langchain"])
    assert code == 2
    assert capsys.readouterr().err == f"parity: error: {missing}: no such file\n"


def test_a_texts_file_that_cannot_be_read_is_exit_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = _texts(tmp_path, ["hello"])
    real = Path.open

    def denied(self: Path, *args: Any, **kwargs: Any) -> Any:
        if self == texts:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", denied)  # every way of reading the file opens it
    code = main(["run", "--texts", str(texts), "--adapter", "custom", "--adapter", "langchain"])
    assert code == 2
    err = capsys.readouterr().err
    assert err == f"parity: error: {texts}: cannot read the texts: Permission denied\n"


def test_an_out_that_is_a_file_is_exit_2_naming_it(
    bpe_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report.txt"
    out.write_text("not a directory\n")
    argv = _run(bpe_model, _texts(tmp_path, ["hello"]), "--out", str(out))
    assert main([*argv, "--adapter", "custom", "--adapter", "custom:label=other"]) == 2
    assert capsys.readouterr().err == (
        f"parity: error: {out}: cannot write the report there: it is a file, not a directory; "
        "give --out a directory (it is created if missing)\n"
    )
    assert out.read_text() == "not a directory\n"


def test_an_out_below_a_file_is_exit_2_naming_the_path(
    bpe_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    out = blocker / "report"
    argv = _run(bpe_model, _texts(tmp_path, ["hello"]), "--out", str(out))
    assert main([*argv, "--adapter", "custom", "--adapter", "custom:label=other"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("parity: error: ") and err.count("\n") == 1
    assert "cannot write the report: Not a directory; give --out a writable directory" in err


def test_a_baseline_out_below_a_file_is_exit_2_naming_the_option(
    bpe_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    out = blocker / "base"
    argv = ["baseline", "create", "--model", str(bpe_model), "--out", str(out), "--quiet"]
    texts = _texts(tmp_path, ["hello"])
    assert main([*argv, "--texts", str(texts), "--adapter", "custom"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("parity: error: ") and err.count("\n") == 1
    assert err == (
        f"parity: error: {blocker}: is a file where a directory is needed (from --out {out})\n"
    )
    assert blocker.read_text() == "x"


class LoadCrashingAdapter(CrashingAdapter):
    """A backend whose _load has a bug (or hits a torch RuntimeError), not a bad model."""

    name = "load-crashing"

    def _load(self) -> None:
        raise RuntimeError("CUDA error: an illegal memory access was encountered")


def test_a_crash_inside_a_backends_load_exits_3_naming_the_adapter(
    bpe_model: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from parity.adapters import REGISTRY

    monkeypatch.setitem(REGISTRY, "load-crashing", LoadCrashingAdapter)
    out = tmp_path / "out"
    argv = _run(bpe_model, _texts(tmp_path, ["hello"]), "--out", str(out))
    code = main([*argv, "--adapter", "custom", "--adapter", "load-crashing:label=broken"])
    assert code == 3
    kind, message, log = _internal_error(capsys.readouterr().err)
    assert (kind, message, log) == (
        "AdapterCrash",
        "adapter broken crashed while loading: RuntimeError: "
        "CUDA error: an illegal memory access was encountered",
        out / "error.log",
    )
    assert "in _load" in log.read_text()
    with pytest.raises(Exception, match="crashed while loading") as caught:
        main(["--debug", *argv, "--adapter", "custom", "--adapter", "load-crashing"])
    assert isinstance(caught.value.__cause__, RuntimeError)


def test_a_crash_inside_the_gate_exits_3(
    bpe_model: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import parity.gate.run

    base = tmp_path / "base"
    texts = _texts(tmp_path, ["hello", "world"])
    argv = ["baseline", "create", "--model", str(bpe_model), "--texts", str(texts), "--quiet"]
    assert main([*argv, "--out", str(base), "--adapter", "custom"]) == 0
    capsys.readouterr()

    def newly_failing(*args: Any, **kwargs: Any) -> Any:
        return {}["cross_pairs"]  # a bug inside the gate's own comparison

    monkeypatch.setattr(parity.gate.run, "_newly_failing", newly_failing)
    out = tmp_path / "gate"
    code = main(["gate", "--baseline", str(base), "--out", str(out), "--quiet"])
    assert code == 3
    captured = capsys.readouterr()
    assert "parity gate:" not in captured.out  # no verdict line for a gate that crashed
    kind, message, log = _internal_error(captured.err)
    assert (kind, message, log) == ("KeyError", "'cross_pairs'", out / "error.log")
    assert "in newly_failing" in log.read_text() and "_compare" in log.read_text()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["passed"] is False and summary["exit_code"] == 3


def test_a_full_disk_while_writing_a_baseline_is_exit_2_naming_the_file(
    bpe_model: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import errno

    import parity.baseline.swap as swap

    def full(*args: Any, **kwargs: Any) -> Any:
        raise OSError(errno.ENOSPC, "No space left on device")  # names no file, as the OS does

    monkeypatch.setattr(swap, "open", full, raising=False)
    out = tmp_path / "base"
    argv = ["baseline", "create", "--model", str(bpe_model), "--adapter", "custom"]
    code = main(
        [*argv, "--texts", str(_texts(tmp_path, ["hello"])), "--no-retrieval", "--out", str(out)]
    )
    err = capsys.readouterr().err
    assert code == 2, err
    assert re.fullmatch(
        rf"parity: error: {re.escape(str(tmp_path))}/\.base\.tmp-\d+/\S+: No space left on device "
        rf"\(from --out {re.escape(str(out))}\)",
        err.splitlines()[-1],
    )
    assert not out.exists()


def test_only_what_parity_writes_under_a_broad_out_is_the_users_path(tmp_path: Path) -> None:
    from parity.cli.outcome import _concerns

    out = tmp_path / "out"
    assert _concerns(str(out / "summary.json"), out, depth=2)
    assert _concerns(str(out / "1_Pooling" / "config.json"), out, depth=2)
    assert not _concerns(str(out / ".venv" / "lib" / "torch" / "x.so"), out, depth=2)
    assert _concerns(str(tmp_path / ".out.tmp-7" / "manifest.json"), out)  # inside a sibling
    assert not _concerns(str(tmp_path / "outer" / "x"), out)
    home = Path("~").expanduser()
    assert _concerns(str(home / "m" / "config.json"), Path("~/m"))


def test_a_traceback_with_nowhere_to_go_is_printed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import tempfile

    from parity.cli.outcome import write_error_log

    def full(*args: Any, **kwargs: Any) -> Any:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tempfile, "mkstemp", full)
    try:
        raise RuntimeError("boom")
    except RuntimeError as exc:
        where = write_error_log(exc, None, ["run"])
    assert str(where) == "<stderr, above>"
    err = capsys.readouterr().err
    assert "Traceback" in err and "RuntimeError: boom" in err
