from __future__ import annotations

import json
from pathlib import Path

import pytest

from parity.errors import ParityInputError
from parity.texts import builtin_corpus, corpus_records, load_texts


def test_jsonl_accepts_objects_and_strings(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text('{"text": " a\\n"}\n"b"\n\n{"text": ""}\n', encoding="utf-8")
    assert load_texts(path) == [" a\n", "b", ""]


def test_jsonl_null_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "texts.jsonl"
    path.write_text('{"text": "ok"}\n{"text": null}\n', encoding="utf-8")
    with pytest.raises(ParityInputError) as info:
        load_texts(path)
    assert str(info.value) == f"{path} line 2: expected a string, got null"


def test_jsonl_errors(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text('{"txt": "x"}\n', encoding="utf-8")
    with pytest.raises(ParityInputError, match="line 1: object has no 'text' key"):
        load_texts(path)
    path.write_text("{broken\n", encoding="utf-8")
    with pytest.raises(ParityInputError, match="line 1: invalid JSON"):
        load_texts(path)
    path.write_text("[1, 2]\n", encoding="utf-8")
    with pytest.raises(ParityInputError, match="line 1: expected a string, got array"):
        load_texts(path)


def test_empty_file_is_no_texts(tmp_path: Path) -> None:
    path = tmp_path / "empty.txt"
    path.write_text("", encoding="utf-8")
    with pytest.raises(ParityInputError, match=r"empty\.txt: no texts"):
        load_texts(path)


def test_txt_keeps_edge_whitespace(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_bytes(b"  lead\ntrail  \r\n\n\tlast\n")
    assert load_texts(path) == ["  lead", "trail  ", "", "\tlast"]


def test_csv_and_parquet_text_column(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    csv_path = tmp_path / "t.csv"
    csv_path.write_text('id,text\n1,"multi\nline"\n2, x \n', encoding="utf-8")
    assert load_texts(csv_path) == ["multi\nline", " x "]
    pq_path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"text": ["a", " b"]}), pq_path)
    assert load_texts(pq_path) == ["a", " b"]
    pq.write_table(pa.table({"text": ["a", None]}), pq_path)
    with pytest.raises(ParityInputError, match="row 2: expected a string, got null"):
        load_texts(pq_path)
    pq.write_table(pa.table({"body": ["a"]}), pq_path)
    with pytest.raises(ParityInputError, match="no 'text' column \\(columns: body\\)"):
        load_texts(pq_path)


def test_unsupported_or_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ParityInputError, match=r"unsupported file type '\.docx'"):
        load_texts(tmp_path / "a.docx")
    with pytest.raises(ParityInputError, match="no such file"):
        load_texts(tmp_path / "missing.jsonl")


def test_builtin_corpus_covers_what_the_report_needs(minilm: Path) -> None:
    from transformers import AutoTokenizer

    records = corpus_records()
    texts = builtin_corpus()
    assert len(texts) >= 100 and len(set(texts)) == len(texts)
    assert {r["lang"] for r in records} >= {"en", "zh"}
    assert sum("\n" in t.strip() for t in texts) >= 10
    assert sum(t != t.strip() for t in texts) >= 10
    tokenizer = AutoTokenizer.from_pretrained(str(minilm))
    long_texts = [t for t in texts if len(tokenizer(t)["input_ids"]) > 256]
    assert len(long_texts) >= 15
    json.dumps(records)
