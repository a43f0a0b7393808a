"""An unchanged `parity run` is answered from the cache (parity.remember): the same outputs and
exit code with no model loaded; anything in its key changing runs it again."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from parity.adapters import AdapterSpec
from parity.adapters.base import Adapter
from parity.cache import EmbeddingCache
from parity.cli import main
from parity.remember import run_key
from tests.diagnosed_run import rebuilt_embeds

SPECS = ["custom", "custom:strip=true"]
TEXTS = ["a", " edge ", "two words", "\tlast\n"]
UNCHANGED = "parity: unchanged since the run of "


def _run(model: Path, texts: Path, out: Path, cache: Path, *extra: str) -> int:
    argv = ["run", "--model", str(model), "--texts", str(texts), "--out", str(out)]
    argv += ["--cache", str(cache), "--no-retrieval", *extra]
    for spec in SPECS:
        argv += ["--adapter", spec]
    return main(argv)


@pytest.fixture
def texts(tmp_path: Path) -> Path:
    path = tmp_path / "texts.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS), encoding="utf-8")
    return path


def _no_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: Adapter) -> None:
        raise AssertionError(f"{self.label} loaded a model")

    monkeypatch.setattr(Adapter, "load", refuse)


def test_an_unchanged_run_gives_the_first_runs_outputs_without_loading_a_model(
    bpe_model: Path,
    texts: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cache = tmp_path / "cache"
    junit = tmp_path / "junit.xml"
    first = _run(bpe_model, texts, tmp_path / "first", cache)
    first_io = capsys.readouterr()
    assert first == 1 and UNCHANGED not in first_io.err  # strip=true differs on " edge "
    _no_loading(monkeypatch)
    again = _run(bpe_model, texts, tmp_path / "again", cache, "--junit", str(junit))
    again_io = capsys.readouterr()
    assert again == 1 and UNCHANGED in again_io.err
    assert again_io.out == first_io.out.replace(str(tmp_path / "first"), str(tmp_path / "again"))
    for name in ("summary.json", "report.md", "report.html", "results.parquet"):
        assert (tmp_path / "again" / name).read_bytes() == (tmp_path / "first" / name).read_bytes()
    assert 'failures="1"' in junit.read_text()
    info = EmbeddingCache(cache).info()
    assert info.runs == 1 and info.keys == 2  # one remembered run beside each side's vectors


def test_a_changed_tolerance_or_model_file_runs_again(
    bpe_model: Path,
    texts: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cache = tmp_path / "cache"
    model = Path(shutil.copytree(bpe_model, tmp_path / "bpe"))
    assert _run(model, texts, tmp_path / "a", cache) == 1
    capsys.readouterr()
    assert _run(model, texts, tmp_path / "b", cache, "--tol", "1") == 0  # another verdict
    assert UNCHANGED not in capsys.readouterr().err
    config = model / "tokenizer_config.json"
    config.write_text(config.read_text() + "\n")  # the same settings, other bytes
    assert _run(model, texts, tmp_path / "c", cache) == 1
    assert UNCHANGED not in capsys.readouterr().err
    assert _run(model, texts, tmp_path / "d", cache) == 1
    assert UNCHANGED in capsys.readouterr().err
    assert _run(model, texts, tmp_path / "e", cache, "--no-cache") == 1
    assert UNCHANGED not in capsys.readouterr().err


def test_a_damaged_remembered_run_runs_again_and_is_replaced(
    bpe_model: Path, texts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = tmp_path / "cache"
    assert _run(bpe_model, texts, tmp_path / "a", cache) == 1
    (blob,) = cache.glob("v1/run-*/run.zip")
    blob.write_bytes(b"PK\x03\x04 torn")
    capsys.readouterr()
    assert _run(bpe_model, texts, tmp_path / "b", cache) == 1
    assert UNCHANGED not in capsys.readouterr().err
    assert _run(bpe_model, texts, tmp_path / "c", cache) == 1
    assert UNCHANGED in capsys.readouterr().err


def test_a_server_or_a_vectors_file_is_never_remembered(bpe_model: Path, tmp_path: Path) -> None:
    plain = [AdapterSpec.parse(s) for s in SPECS]
    settings = {"tolerance": "default"}
    assert run_key(plain, bpe_model, TEXTS, settings) == run_key(plain, bpe_model, TEXTS, settings)
    assert run_key(plain, bpe_model, TEXTS, settings) != run_key(
        plain, bpe_model, TEXTS[:3], settings
    )
    served = AdapterSpec.parse("http:url=http://127.0.0.1:9/embeddings,model=m")
    assert run_key([plain[0], served], bpe_model, TEXTS, settings) is None
    exported = AdapterSpec.parse(f"vectors:path={tmp_path / 'v.parquet'}")
    assert run_key([plain[0], exported], bpe_model, TEXTS, settings) is None
    on_gpu = AdapterSpec.parse("custom:device=cuda")
    assert run_key([plain[0], on_gpu], bpe_model, TEXTS, settings) is None
    onnx_gpu = AdapterSpec.parse("onnx:provider=CUDAExecutionProvider")
    assert run_key([plain[0], onnx_gpu], bpe_model, TEXTS, settings) is None
    assert run_key([plain[0], AdapterSpec.parse("onnx")], bpe_model, TEXTS, settings) is not None


def test_a_run_whose_probe_crashed_is_not_kept() -> None:
    from parity.remember import worth_keeping

    probes = [{"probe": "noise floor", "skipped": "MemoryError: "}]
    assert worth_keeping({"pairs": [{"diagnosis": {"probes": probes}}, {"diagnosis": None}]})
    probes.append({"probe": "custom: max_length=8", "skipped": "OSError: ", "crashed": True})
    assert not worth_keeping({"pairs": [{"diagnosis": {"probes": probes}}]})


def test_a_run_whose_probe_crashed_runs_again_next_time(
    bpe_model: Path,
    texts: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def flaky(*args: object) -> None:
        raise MemoryError("while measuring the noise floor")

    with monkeypatch.context() as patched:
        patched.setattr("parity.diagnose.pair.noise_floor", flaky)
        assert _run(bpe_model, texts, tmp_path / "a", tmp_path / "cache") == 1
    summary = json.loads((tmp_path / "a/summary.json").read_text())
    assert summary["pairs"][0]["diagnosis"]["probes"][-1]["crashed"] is True
    capsys.readouterr()
    assert _run(bpe_model, texts, tmp_path / "b", tmp_path / "cache") == 1
    assert UNCHANGED not in capsys.readouterr().err  # not remembered: run again, this time whole
    assert _run(bpe_model, texts, tmp_path / "c", tmp_path / "cache") == 1
    assert UNCHANGED in capsys.readouterr().err


def _long_texts_run(model: Path, tmp_path: Path, *specs: str) -> list[str]:
    """`parity run` argv over two texts longer than max_length=8, with a cache in tmp_path."""
    long = tmp_path / "long.txt"
    long.write_text("\n".join(" ".join(f"w{i}" for i in range(n)) for n in (30, 40)) + "\n")
    argv = ["run", "--model", str(model), "--texts", str(long), "--no-retrieval", "--quiet"]
    argv += ["--cache", str(tmp_path / "cache")]
    for spec in specs:
        argv += ["--adapter", spec]
    return argv


def test_a_rerun_takes_the_probes_vectors_from_the_cache_too(
    bpe_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rebuilt = rebuilt_embeds(monkeypatch)
    # two settings differ: a side rebuilt with one of them is neither side (not in the cache)
    argv = _long_texts_run(bpe_model, tmp_path, "custom:pooling=cls", "custom:max_length=8")
    assert main([*argv, "--out", str(tmp_path / "a")]) == 1
    first_run = list(rebuilt)  # probes: a side rebuilt with one of the other's settings
    rebuilt.clear()
    assert main([*argv, "--out", str(tmp_path / "b"), "--rerun"]) == 1
    # from the cache, but for the side rebuilt with both settings: that is the other side,
    # whose own vectors a probe must never read back
    assert len(first_run) > 1 and rebuilt == [2]
    first = json.loads((tmp_path / "a/summary.json").read_text())
    again = json.loads((tmp_path / "b/summary.json").read_text())
    assert again["pairs"][0]["causes"] == first["pairs"][0]["causes"]
    assert {"pooling", "truncation"} <= {c["cause"] for c in first["pairs"][0]["causes"]} | {
        also for c in first["pairs"][0]["causes"] for also in c["also"]
    }


def test_a_side_rebuilt_into_the_other_side_embeds_for_real(
    bpe_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rebuilt = rebuilt_embeds(monkeypatch)
    argv = _long_texts_run(bpe_model, tmp_path, "custom", "custom:max_length=8")
    argv += ["--out", str(tmp_path / "out")]
    for extra in ([], ["--rerun"]):
        rebuilt.clear()
        assert main([*argv, *extra]) == 1
        # custom rebuilt with max_length=8 is the second side's configuration, whose vectors
        # the cache holds: reading them back would reproduce that side by construction
        assert rebuilt == [2]
    summary = json.loads((tmp_path / "out/summary.json").read_text())
    assert summary["pairs"][0]["causes"][0]["cause"] == "truncation"
