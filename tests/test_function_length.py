"""No function in `parity/` is longer than ~60 lines: long functions hide their steps."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "parity"
MAX_LINES = 60

# "module:function": one line saying why it may be longer
EXCEPTIONS: dict[str, str] = {}


def long_functions(limit: int = MAX_LINES) -> dict[str, int]:
    found: dict[str, int] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = path.relative_to(PACKAGE.parent).with_suffix("").as_posix().replace("/", ".")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > limit:
                    found[f"{module}:{node.name}"] = length
    return found


def test_no_function_is_longer_than_the_limit() -> None:
    too_long = {k: v for k, v in long_functions().items() if k not in EXCEPTIONS}
    assert too_long == {}


def test_every_exception_is_still_needed() -> None:
    assert sorted(set(EXCEPTIONS) - set(long_functions())) == []
