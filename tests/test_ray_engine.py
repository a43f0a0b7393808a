"""`parity run --engine ray`: failures on the workers (agreement with the local engine on the
built-in corpus: tests/test_engines_agree.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from parity.cli import main

pytestmark = pytest.mark.slow


def test_a_worker_that_cannot_load_its_model_is_one_exit_2_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], bpe_model: Path
) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    texts = tmp_path / "t.txt"
    texts.write_text("one\ntwo\n")
    argv = ["run", "--model", str(bpe_model), "--texts", str(texts), "--engine", "ray"]
    code = main([*argv, "--adapter", "custom", "--adapter", f"custom:model={broken}"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"cannot load a model from {str(broken)!r}" in err and "Traceback" not in err
