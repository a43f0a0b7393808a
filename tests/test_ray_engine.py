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


def test_kept_pools_split_the_cpus_and_never_answer_for_another_model(
    tiny_models: dict[str, Path],
) -> None:
    import numpy as np

    from parity.adapters import AdapterSpec
    from parity.distributed import RayEngine

    texts = ["one text", " two ", "three and four"]
    specs = [AdapterSpec.parse("custom"), AdapterSpec.parse("custom:strip=true")]
    first, second = tiny_models["bpe"], tiny_models["unigram"]
    expected = {}
    for model in (first, second):
        with specs[0].build(model) as local:
            expected[model] = local.embed(texts)
    lines: list[str] = []
    with RayEngine() as engine:  # a local cluster of this machine's 2 CPUs
        engine.keep_pools(specs, {s.label: first for s in specs})
        assert [len(p.actors) for p in engine._pools.values()] == [1, 1]  # 2 CPUs, 2 pools
        got = engine.embed_sides(
            [(specs[0], first, texts, 2), (specs[0], second, texts, 2)], lines.append
        )
        np.testing.assert_allclose(got[0][0], expected[first], atol=1e-6)
        np.testing.assert_allclose(got[1][0], expected[second], atol=1e-6)  # not the kept pool's
        engine.keep_pools(specs, {s.label: second for s in specs})  # the first two pools stop
        vectors, _, tokens = engine.embed(specs[0], second, texts, 2, lines.append)
        np.testing.assert_allclose(vectors, expected[second], atol=1e-6)
        assert tokens is not None and len(tokens) == 3
        engine.drop_pools()
        assert engine._pools == {}
    assert lines[0].startswith("custom: 3 texts in ") and "on 1 Ray workers" in lines[0]
