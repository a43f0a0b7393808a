"""Reading text sets (.jsonl, .txt, .csv, .parquet) and the built-in corpus."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

from parity.errors import ParityInputError
from parity.files import os_reason

SUFFIXES = (".jsonl", ".txt", ".csv", ".parquet")


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "object", list: "array", bool: "boolean", int: "number", float: "number"}.get(
        type(value), type(value).__name__
    )


def unencodable(text: str) -> str | None:
    """Why `text` cannot be encoded as UTF-8 (a surrogate such as "\\ud800", which JSON escapes can
    produce and no tokenizer accepts), or None when it can."""
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return (
            f"surrogate {text[exc.start]!r} at character {exc.start} is not valid Unicode text; "
            "remove it or replace it with a real character"
        )
    return None


def iter_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed value) for every non-blank line; invalid JSON names the line."""
    # "\n" only: JSON strings may hold a raw U+2028 or U+0085, which splitlines() splits on
    for number, line in enumerate(path.read_text(encoding="utf-8").split("\n"), start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as exc:
            raise ParityInputError(f"{path} line {number}: invalid JSON: {exc.msg}") from None


def load_texts(path: str | Path) -> list[str]:
    """Read a texts file; raise ParityInputError naming the file and line for anything unusable."""
    return [text for chunk in iter_text_chunks(path, sys.maxsize) for text in chunk]


def corpus_records() -> list[dict[str, str]]:
    """The built-in corpus: English and Chinese, short and long, newlines, edge whitespace."""
    data = resources.files("parity").joinpath("data/corpus.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in data.split("\n") if line.strip()]


def builtin_corpus() -> list[str]:
    return [record["text"] for record in corpus_records()]


def _jsonl_text(path: Path, number: int, value: Any) -> str:
    """The text of one parsed .jsonl line (a string or an object's "text"), or the error."""
    if isinstance(value, dict):
        if "text" not in value:
            raise ParityInputError(f"{path} line {number}: object has no 'text' key")
        value = value["text"]
    if not isinstance(value, str):
        raise ParityInputError(f"{path} line {number}: expected a string, got {_type_name(value)}")
    problem = unencodable(value)
    if problem:
        raise ParityInputError(f"{path} line {number}: {problem}")
    return value


def _stream_jsonl(path: Path) -> Iterator[str]:
    # binary lines split on b"\n" only, as iter_jsonl's split("\n") (a raw U+2028 stays inside;
    # UTF-8 never puts the byte 0x0A inside a multi-byte character)
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            line = raw.decode("utf-8")
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ParityInputError(f"{path} line {number}: invalid JSON: {exc.msg}") from None
            yield _jsonl_text(path, number, value)


def _stream_txt(path: Path) -> Iterator[str]:
    # lines split on "\n", one trailing "\r" dropped, no line after a final "\n"
    if path.stat().st_size == 1 and path.read_bytes() == b"\n":
        return  # a lone newline is no text
    with path.open("rb") as handle:
        for raw in handle:
            line = raw.decode("utf-8")
            line = line[:-1] if line.endswith("\n") else line
            yield line[:-1] if line.endswith("\r") else line


def _stream_csv(path: Path) -> Iterator[str]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or "text" not in reader.fieldnames:
            raise ParityInputError(
                f"{path}: no 'text' column (columns: {', '.join(reader.fieldnames or [])})"
            )
        for row in reader:
            if row["text"] is None:
                raise ParityInputError(f"{path} line {reader.line_num}: missing text cell")
            yield row["text"]


def _stream_parquet(path: Path) -> Iterator[str]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ParityInputError(f"{path}: reading parquet needs `pip install pyarrow`") from None
    try:
        source = pq.ParquetFile(path)
    except Exception as exc:
        raise ParityInputError(f"{path}: not a readable parquet file: {exc}") from None
    if "text" not in source.schema_arrow.names:
        names = ", ".join(source.schema_arrow.names)
        raise ParityInputError(f"{path}: no 'text' column (columns: {names})")
    row = 0
    for batch in _parquet_batches(path, source):
        for value in batch.column(0).to_pylist():
            row += 1
            if not isinstance(value, str):
                got = _type_name(value)
                raise ParityInputError(f"{path} row {row}: expected a string, got {got}")
            problem = unencodable(value)
            if problem:
                raise ParityInputError(f"{path} row {row}: {problem}")
            yield value


def _parquet_batches(path: Path, source: Any) -> Iterator[Any]:
    """The text column's batches; damaged data pages are the user's file, as an unreadable
    footer is (pyarrow raises its own errors while reading)."""
    batches = source.iter_batches(batch_size=4096, columns=["text"])
    while True:
        try:
            batch = next(batches, None)
        except Exception as exc:
            raise ParityInputError(f"{path}: not a readable parquet file: {exc}") from None
        if batch is None:
            return
        yield batch


STREAMERS = {
    ".jsonl": _stream_jsonl,
    ".txt": _stream_txt,
    ".csv": _stream_csv,
    ".parquet": _stream_parquet,
}


def iter_text_chunks(path: str | Path, size: int) -> Iterator[list[str]]:
    """The texts of a file in lists of `size`, read as they are needed (never the whole file at
    once); an error in the middle of the file comes after the chunks before it. load_texts is
    this with one chunk."""
    path = Path(path)
    streamer = STREAMERS.get(path.suffix.lower())
    if streamer is None:
        raise ParityInputError(
            f"{path}: unsupported file type {path.suffix!r}; use one of {', '.join(SUFFIXES)}"
        )
    if path.is_dir():
        raise ParityInputError(f"{path}: is a directory; give a texts file")
    if not path.is_file():
        raise ParityInputError(f"{path}: no such file")
    chunk: list[str] = []
    seen = False
    try:
        for text in streamer(path):
            chunk.append(text)
            if len(chunk) == size:
                seen = True
                yield chunk
                chunk = []
    except UnicodeDecodeError as exc:
        raise ParityInputError(f"{path}: not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise ParityInputError(f"{path}: cannot read the texts: {os_reason(exc)}") from exc
    if chunk:
        yield chunk
    elif not seen:
        raise ParityInputError(f"{path}: no texts")
