"""The one JSON text that is signed, hashed and chained (receipts, audit entries, the
membership document): keys sorted, no spaces, non-ASCII kept as UTF-8. A verifier
recomputes it byte for byte, so every signer and hasher uses this one function."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


def canonical(body: Mapping[str, Any]) -> str:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
