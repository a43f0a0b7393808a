"""Baselines on the tiny BPE model: what `baseline create` records, and every damaged baseline
is an error (exit 2, one line naming the file), never a pass, and never touched."""

from __future__ import annotations

import hashlib
import importlib.metadata
import io
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from parity.cli import main

TEXTS = ["  hello world", "hello world  ", "\tfoo bar\n", "plain text", " x ", "a\nb"]


def _write_texts(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(json.dumps(t) + "\n" for t in texts), encoding="utf-8")
    return path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _snapshot(directory: Path) -> dict[str, str]:
    return {p.name: _sha(p) for p in sorted(directory.iterdir())}


def create(model: Path, out: Path, texts: Path, *adapters: str, extra: tuple[str, ...] = ()) -> int:
    argv = ["baseline", "create", "--model", str(model), "--texts", str(texts), "--out", str(out)]
    for spec in adapters:
        argv += ["--adapter", spec]
    return main([*argv, "--quiet", *extra])


def gate(baseline: Path, *args: str) -> int:
    return main(["gate", "--baseline", str(baseline), "--quiet", *args])


@pytest.fixture(scope="module")
def made(bpe_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pristine baseline of sentence-transformers and custom; copy it before damaging it."""
    root = tmp_path_factory.mktemp("baseline")
    texts = _write_texts(root / "texts.jsonl", TEXTS)
    assert create(bpe_model, root / "base", texts, "sentence-transformers", "custom") == 0
    return root / "base"


@pytest.fixture
def baseline(made: Path, tmp_path: Path) -> Path:
    import shutil

    copy = tmp_path / "base"
    shutil.copytree(made, copy)
    return copy


def test_manifest_records_provenance(made: Path, bpe_model: Path) -> None:
    manifest = json.loads((made / "manifest.json").read_text())
    assert manifest["schema"] == 1
    assert manifest["kind"] == "parity-baseline"
    assert manifest["tool_version"] == __import__("parity").__version__
    assert manifest["created"].endswith("Z")
    expected_text_hashes = [hashlib.sha256(t.encode()).hexdigest() for t in TEXTS]
    assert manifest["texts"]["items"] == expected_text_hashes
    assert (
        manifest["texts"]["sha256"]
        == hashlib.sha256("\n".join(expected_text_hashes).encode()).hexdigest()
    )
    assert manifest["texts"]["count"] == len(TEXTS)
    files = manifest["model"]["files"]
    assert files["model.safetensors"] == _sha(bpe_model / "model.safetensors")
    assert "tokenizer.json" in files
    env = manifest["environment"]
    for name in (
        "python",
        "torch",
        "transformers",
        "sentence-transformers",
        "langchain-core",
        "langchain-huggingface",
        "BCEmbedding",
    ):
        assert env[name], name
    assert env["torch"] == importlib.metadata.version("torch")
    assert manifest["tolerance"] == {"max_abs": 5e-3, "cosine": 5e-3, "euclidean": 5e-3}
    labels = [a["label"] for a in manifest["adapters"]]
    assert labels == ["sentence-transformers", "custom"]
    custom = manifest["adapters"][1]
    assert custom["describe"]["max_length"] == 128
    assert custom["file"] == "custom.npz"
    assert manifest["cross_pairs"] == [
        {"a": "sentence-transformers", "b": "custom", "n": 6, "failures": 0, "passed": True}
    ]
    assert manifest["retrieval"]["texts"] == 192


def test_checksums_cover_every_file_and_vectors_are_float32(
    made: Path, embedder: Callable[[str, Path, list[str]], np.ndarray], bpe_model: Path
) -> None:
    lines = (made / "SHA256SUMS").read_text().splitlines()
    listed = {line.split("  ")[1]: line.split("  ")[0] for line in lines}
    assert set(listed) == {
        "manifest.json",
        "texts.jsonl",
        "custom.npz",
        "sentence-transformers.npz",
    }
    for name, digest in listed.items():
        assert _sha(made / name) == digest
    dim = json.loads((made / "manifest.json").read_text())["dim"]
    with np.load(made / "custom.npz") as data:
        assert data["texts"].dtype == np.float32
        assert data["texts"].shape == (6, dim)
        assert data["retrieval"].shape[0] == 192
        # the run embeds in length-sorted calls: the same vectors as one call, to batch noise
        direct = embedder("custom", bpe_model, TEXTS)
        np.testing.assert_allclose(data["texts"], direct, rtol=0, atol=1e-6)
        assert np.abs(data["texts"][1:] - direct[:-1]).max() > 1e-2  # each row its own text's
    stored = [json.loads(line) for line in (made / "texts.jsonl").read_text().splitlines()]
    assert stored == TEXTS


def test_create_refuses_to_overwrite_without_force(
    made: Path, bpe_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _snapshot(made)
    texts = _write_texts(tmp_path / "t.jsonl", ["other"])
    assert create(bpe_model, made, texts, "custom") == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"parity: error: {made}: a baseline already exists; pass --force to replace it "
        "(the current one is kept as base.prev)"
    )
    assert _snapshot(made) == before


def test_force_replaces_and_keeps_the_previous(
    baseline: Path, bpe_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _snapshot(baseline)
    texts = _write_texts(tmp_path / "t.jsonl", ["other text"])
    code = create(bpe_model, baseline, texts, "custom", extra=("--force", "--no-retrieval"))
    assert code == 0
    assert f"the previous one is kept in {baseline}.prev" in capsys.readouterr().out
    assert _snapshot(baseline.with_name("base.prev")) == before
    manifest = json.loads((baseline / "manifest.json").read_text())
    assert manifest["texts"]["count"] == 1 and manifest["retrieval"] is None
    assert not [p for p in baseline.parent.iterdir() if p.name.startswith(".")]


def _rewrite_npz(path: Path, texts: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, texts=texts)
    path.write_bytes(buffer.getvalue())


def _refresh_checksum(baseline: Path, name: str) -> None:
    sums = baseline / "SHA256SUMS"
    lines = [
        f"{_sha(baseline / name)}  {name}" if line.endswith(f"  {name}") else line
        for line in sums.read_text().splitlines()
    ]
    sums.write_text("\n".join(lines) + "\n")


def _drop_manifest(b: Path) -> None:
    (b / "manifest.json").unlink()


def _drop_vectors(b: Path) -> None:
    (b / "custom.npz").unlink()


def _malformed_json(b: Path) -> None:
    (b / "manifest.json").write_text('{"schema": 1,\n  "adapters": [\n')


def _flip_a_byte(b: Path) -> None:
    data = bytearray((b / "sentence-transformers.npz").read_bytes())
    data[-200] ^= 0xFF
    (b / "sentence-transformers.npz").write_bytes(bytes(data))


def _other_texts(b: Path) -> None:
    _write_texts(b / "texts.jsonl", [*TEXTS[:-1], "a different last text"])
    _refresh_checksum(b, "texts.jsonl")


def _other_dimension(b: Path) -> None:
    with np.load(b / "custom.npz") as data:
        _rewrite_npz(b / "custom.npz", data["texts"][:, :-1])
    _refresh_checksum(b, "custom.npz")


def _unknown_schema(b: Path) -> None:
    manifest = json.loads((b / "manifest.json").read_text())
    manifest["schema"] = 99
    (b / "manifest.json").write_text(json.dumps(manifest))


def _bad_tolerance(b: Path) -> None:
    manifest = json.loads((b / "manifest.json").read_text())
    manifest["tolerance"] = {"max_abs": "tight"}
    (b / "manifest.json").write_text(json.dumps(manifest))


def _adapters_not_objects(b: Path) -> None:
    manifest = json.loads((b / "manifest.json").read_text())
    manifest["adapters"] = ["custom", "x"]
    (b / "manifest.json").write_text(json.dumps(manifest))


def _file_outside(b: Path) -> None:
    manifest = json.loads((b / "manifest.json").read_text())
    manifest["adapters"][1]["file"] = "../base/custom.npz"
    (b / "manifest.json").write_text(json.dumps(manifest))


def _unknown_checksum_entry(b: Path) -> None:
    with (b / "SHA256SUMS").open("a") as sums:
        sums.write("0" * 64 + "  ghost.npz\n")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_drop_manifest, "{b}/manifest.json: missing; this is not a complete baseline"),
        (_drop_vectors, "{b}/custom.npz: missing"),
        (_malformed_json, "{b}/manifest.json: malformed JSON at line 3 column 1"),
        (_flip_a_byte, "{b}/sentence-transformers.npz: checksum mismatch (SHA256SUMS says"),
        (_other_texts, "{b}/texts.jsonl: a different text set (6 texts, sha256"),
        (
            _other_dimension,
            "{b}/custom.npz: embedding dimension {dim} in `texts`, the manifest says",
        ),
        (_unknown_schema, "{b}/manifest.json: unknown schema version 99 (this parity reads 1)"),
        (_bad_tolerance, "{b}/manifest.json: `tolerance` must map max_abs, cosine, euclidean"),
        (_adapters_not_objects, "{b}/manifest.json: adapter #1 must be an object with label"),
        (_file_outside, "{b}/manifest.json: adapter 'custom': `file` must be a plain .npz name"),
        (_unknown_checksum_entry, "{b}/SHA256SUMS: lists ghost.npz, which the manifest does not"),
    ],
    ids=[
        "missing-manifest",
        "missing-vectors",
        "malformed-json",
        "checksum",
        "text-set",
        "dimension",
        "schema",
        "tolerance",
        "adapters-shape",
        "file-outside",
        "checksum-extra",
    ],
)
def test_a_damaged_baseline_is_an_error_and_left_alone(
    baseline: Path,
    damage: Callable[[Path], None],
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    dim = json.loads((baseline / "manifest.json").read_text())["dim"]
    damage(baseline)
    before = _snapshot(baseline)
    assert gate(baseline) == 2
    captured = capsys.readouterr()
    err_lines = captured.err.strip().splitlines()
    assert len(err_lines) == 1, captured.err
    assert err_lines[0].startswith("parity: error: " + message.format(b=baseline, dim=dim - 1))
    assert _snapshot(baseline) == before
    assert not baseline.with_name("base.prev").exists()


def test_gate_on_other_texts_than_recorded_is_an_error(
    baseline: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    texts = _write_texts(tmp_path / "t.jsonl", ["something else"])
    assert gate(baseline, "--texts", str(texts)) == 2
    assert "made for a different text set (6 texts) than the 1 given" in capsys.readouterr().err


def test_gate_with_an_adapter_the_baseline_lacks_is_an_error(
    baseline: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert gate(baseline, "--adapter", "langchain") == 2
    err = capsys.readouterr().err
    assert "no baseline for adapter 'langchain'" in err
    assert "recorded: sentence-transformers, custom" in err


def test_texts_with_unicode_line_separators_round_trip(
    bpe_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    texts = ["a\u2028b", "next\x85line", "para\u2029graph", "ok\r\n"]
    source = _write_texts(tmp_path / "t.jsonl", texts)
    assert create(bpe_model, tmp_path / "base", source, "custom", extra=("--no-retrieval",)) == 0
    assert gate(tmp_path / "base") == 0
    assert "PASS: 1 adapter(s) match" in capsys.readouterr().out


def test_an_interrupted_replace_keeps_the_old_baseline(
    baseline: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from parity.baseline import load_baseline, write_baseline

    old = load_baseline(baseline)
    before = _snapshot(baseline)
    (baseline.with_name("base.prev")).mkdir()
    (baseline.with_name("base.prev") / "manifest.json").write_text("{}")
    real_rename = Path.rename

    def interrupted(self: Path, target: Path) -> Path:
        if self.name.startswith(".base.tmp-"):
            raise KeyboardInterrupt
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", interrupted)
    monkeypatch.setenv("PARITY_TEST_SWAP", "rename")  # the renames fallback; Linux exchanges
    with pytest.raises(KeyboardInterrupt):
        write_baseline(baseline, old.manifest, old.texts, old.vectors, force=True)
    monkeypatch.undo()
    assert _snapshot(baseline) == before
    assert (baseline.with_name("base.prev") / "manifest.json").read_text() == "{}"
    assert sorted(p.name for p in baseline.parent.iterdir()) == ["base", "base.prev"]


def test_force_never_replaces_a_directory_that_is_not_a_baseline(
    bpe_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    texts = _write_texts(tmp_path / "t.jsonl", ["x"])
    assert create(bpe_model, project, texts, "custom", extra=("--force",)) == 2
    assert capsys.readouterr().err.strip() == (
        f"parity: error: {project}: exists and is not a parity baseline (no manifest.json); "
        "choose another --out"
    )
    assert [p.name for p in project.iterdir()] == ["src"]
    assert not project.with_name("project.prev").exists()


def test_gate_update_with_a_subset_keeps_the_other_recorded_adapters(
    baseline: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the adapters not given are gated (and re-recorded) as recorded, never dropped
    assert gate(baseline, "--adapter", "custom", "--update") == 0
    manifest = json.loads((baseline / "manifest.json").read_text())
    assert [a["spec"] for a in manifest["adapters"]] == ["sentence-transformers", "custom"]
    assert "overridden" not in capsys.readouterr().out  # custom is given as recorded


@pytest.mark.parametrize("value", ["nan", "-1", "inf", "tight"])
def test_max_ndcg_drop_must_be_a_finite_non_negative_number(baseline: Path, value: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        gate(baseline, "--max-ndcg-drop", value)
    assert exit_info.value.code == 2


def test_a_partial_tol_keeps_the_recorded_tolerances(bpe_model: Path, tmp_path: Path) -> None:
    texts = _write_texts(tmp_path / "t.jsonl", ["plain text"])
    argv = ["--no-retrieval", "--tol", "2e-3"]
    assert create(bpe_model, tmp_path / "base", texts, "custom", extra=tuple(argv)) == 0
    out = tmp_path / "out"
    assert gate(tmp_path / "base", "--tol", "cosine=1e-2", "--out", str(out)) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["tolerance"] == {"max_abs": 2e-3, "cosine": 1e-2, "euclidean": 2e-3}
