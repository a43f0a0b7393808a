"""`vectors:path=FILE`: a stack's vectors exported elsewhere, compared without re-embedding."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from parity.adapters import AdapterSpec
from parity.cli import main
from parity.errors import AdapterError, SpecError
from parity.files import text_sha256

TEXTS = ["plain text", "  edge spaces  ", "line one\nline two", "数据 中文", "\tTabbed"]


@pytest.fixture(scope="module")
def exported(bpe_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real vectors of TEXTS from a stack that strips (as sentence-transformers < 5.4 did),
    saved as an index export would be."""
    root = tmp_path_factory.mktemp("export")
    with AdapterSpec.parse("custom:strip=true").build(bpe_model) as adapter:
        vectors = adapter.embed(TEXTS)
    table = pa.table(
        {
            "sha256": [text_sha256(t) for t in TEXTS],
            "vector": [list(map(float, v)) for v in vectors],
        }
    )
    pq.write_table(table, root / "index.parquet")
    np.savez(root / "index.npz", text=np.array(TEXTS), vectors=vectors)
    (root / "texts.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS))
    return {
        "parquet": root / "index.parquet",
        "npz": root / "index.npz",
        "texts": root / "texts.jsonl",
    }


@pytest.mark.parametrize("kind", ["parquet", "npz"])
def test_exported_vectors_match_the_stack_that_made_them(
    kind: str, exported: dict[str, Path], bpe_model: Path, tmp_path: Path
) -> None:
    code = main(
        ["run", "--model", str(bpe_model), "--texts", str(exported["texts"]), "--no-retrieval",
         "--adapter", f"vectors:path={exported[kind]}", "--adapter", "custom:strip=true",
         "--out", str(tmp_path)]
    )  # fmt: skip
    assert code == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["pairs"][0]["stats"]["max_abs"]["max"] == 0.0
    config = summary["adapters"][0]["config"]
    assert config["rows"] == len(TEXTS) and config["path"] == str(exported[kind])


def test_a_stack_that_no_longer_strips_differs_from_the_index_and_the_cause_is_measured(
    exported: dict[str, Path], bpe_model: Path, tmp_path: Path
) -> None:
    code = main(
        ["run", "--model", str(bpe_model), "--texts", str(exported["texts"]), "--no-retrieval",
         "--adapter", f"vectors:path={exported['parquet']}", "--adapter", "custom",
         "--out", str(tmp_path)]
    )  # fmt: skip
    assert code == 1
    pair = json.loads((tmp_path / "summary.json").read_text())["pairs"][0]
    assert pair["failures"] == 2  # the two texts with edge whitespace
    causes = pair["causes"]
    assert [(c["cause"], c["evidence"]) for c in causes] == [("strip", "measured")]
    # measured by embedding strip(text) with the live stack: it gave the exported vectors
    assert "custom given strip(text) reproduced vectors:" in causes[0]["basis"]


def test_a_text_missing_from_the_export_is_one_exit_2_line(
    exported: dict[str, Path], bpe_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    texts = tmp_path / "more.txt"
    texts.write_text("plain text\nnot exported\n")
    code = main(
        ["run", "--model", str(bpe_model), "--texts", str(texts), "--no-retrieval",
         "--adapter", f"vectors:path={exported['parquet']}", "--adapter", "custom"]
    )  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert "1 of the 2 texts embedded in this call are not in" in err
    assert f"first 'not exported' (sha256 {text_sha256('not exported')})" in err
    assert "text #" not in err and "pass --texts" not in err
    assert "export vectors for these texts, or run on the texts you exported" in err


def test_path_is_required_and_a_bare_npy_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"adapter 'vectors' needs path="):
        AdapterSpec.parse("vectors").build("")
    bare = tmp_path / "v.npy"
    np.save(bare, np.zeros((2, 3)))
    with pytest.raises(AdapterError, match=r"a bare \.npy has no texts"):
        AdapterSpec.parse(f"vectors:path={bare}").build("").load()


def test_the_readme_command_runs_with_the_retrieval_set_on_and_says_it_is_skipped(
    exported: dict[str, Path], bpe_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # no --no-retrieval: `parity run` embeds the built-in retrieval set by default, whose
    # texts no export holds; before, every such run exited 2 on a missing text
    code = main(
        ["run", "--model", str(bpe_model), "--texts", str(exported["texts"]),
         "--adapter", f"vectors:path={exported['parquet']}", "--adapter", "custom:strip=true",
         "--out", str(tmp_path)]
    )  # fmt: skip
    assert code == 0
    err = capsys.readouterr().err
    label = f"vectors:path={exported['parquet']}"
    assert f"retrieval set skipped: {label} holds only the texts it was exported with" in err
    pair = json.loads((tmp_path / "summary.json").read_text())["pairs"][0]
    assert pair["stats"]["max_abs"]["max"] == 0.0 and pair["n"] == len(TEXTS)


def test_a_missing_file_names_the_path_not_the_model(tmp_path: Path) -> None:
    missing = tmp_path / "missing.parquet"
    with pytest.raises(AdapterError) as error:
        AdapterSpec.parse(f"vectors:path={missing}").build("").load()
    assert str(error.value) == (
        f"vectors:path={missing}: path={str(missing)!r} does not exist; give the exported file"
    )
    with pytest.raises(AdapterError, match=r"is a directory; give the exported file"):
        AdapterSpec.parse(f"vectors:path={tmp_path}").build("").load()


def test_a_missing_file_through_the_cli_is_exit_2_naming_it(
    bpe_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    texts = tmp_path / "t.txt"
    texts.write_text("a\n")
    code = main(
        ["run", "--model", str(bpe_model), "--texts", str(texts),
         "--adapter", "vectors:path=/missing.parquet", "--adapter", "custom"]
    )  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert "path='/missing.parquet' does not exist" in err and "--model" not in err
