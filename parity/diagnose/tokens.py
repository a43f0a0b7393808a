"""Token-level view of a divergence: the first stage where two adapters part ways."""

from __future__ import annotations

import difflib
from collections.abc import Sequence


def token_diff(a_tokens: Sequence[str], b_tokens: Sequence[str], limit: int = 3) -> list[str]:
    """Aligned differences between two token lists, e.g. `'Ġ' only in A`, `'Ċ' vs 'Ġ'`."""
    matcher = difflib.SequenceMatcher(a=list(a_tokens), b=list(b_tokens), autojunk=False)
    found = []
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            continue
        left = " ".join(repr(t) for t in a_tokens[i1:i2])
        right = " ".join(repr(t) for t in b_tokens[j1:j2])
        if op == "delete":
            found.append(f"{left} only in A (position {i1})")
        elif op == "insert":
            found.append(f"{right} only in B (position {j1})")
        else:
            found.append(f"{left} vs {right} (position {i1})")
        if len(found) == limit:
            break
    return found
