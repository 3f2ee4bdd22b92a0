"""The one JSON text that is signed, hashed and chained (receipts, audit entries, the
membership document): keys sorted, no spaces, non-ASCII kept as UTF-8. A verifier
recomputes it byte for byte, so every signer and hasher uses this one function."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any


def canonical(body: Mapping[str, Any]) -> str:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def loads(text: str | bytes) -> Any:
    """``json.loads`` for text from outside (a peer's receipt, an export, a file): text
    nested deeper than Python's recursion limit is a ValueError, as any other text that is
    not JSON. ~2 000 levels of ``[`` raised RecursionError, which callers catching
    ValueError let through: a 6 KB receipt failed a whole query INTERNAL (review,
    2026-12-05)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("not JSON: nested too deeply") from None


_DIGEST = re.compile(r"[0-9a-f]{64}")


def is_digest(text: str) -> bool:
    """A SHA-256 as the hashed and chained records write it: 64 lower-case hex digits."""
    return bool(_DIGEST.fullmatch(text))
