"""One owner's rows for a PSI session or join: read, canonicalised, deduplicated.

Identifiers are matched byte for byte after hashing, so both owners must write them the
same way: stripped, upper case; a column named like ``credit_code`` holds Unified Social
Credit Codes, whose check characters are verified (a code that fails is dropped and
counted, never matched). A PSI counts distinct identifiers; a join aggregate joins one
row per identifier, so a key that repeats on a side with groups or values is refused.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from gateway.credit_code import valid_mask
from gateway.errors import FailedPrecondition

MAX_SET = 2_000_000  # identifiers per side and session


def is_credit_code_column(name: str) -> bool:
    return "credit_code" in name.lower()


@dataclass(frozen=True)
class SideRows:
    items: list[bytes]  # canonical identifiers, distinct
    invalid: int  # dropped: empty, or a credit code whose check characters fail
    digest: str  # of the set, whatever its order (the differencing defence compares it)
    groups: list[tuple[object, ...]] = field(default_factory=list)  # distinct group keys
    group_index: np.ndarray | None = None  # per item: its group's index
    values: list[list[Any]] = field(default_factory=list)  # per value column, per item


def set_digest(items: Sequence[bytes]) -> str:
    """Order-independent: the sorted identifiers, hashed (only equality is compared)."""
    h = hashlib.blake2b(digest_size=16)
    for item in sorted(items):
        h.update(len(item).to_bytes(4, "big"))
        h.update(item)
    return h.hexdigest()


def canonical(
    table: pa.Table,
    key: str,
    groups: Sequence[str] = (),
    values: Sequence[str] = (),
    *,
    unique: bool,
    dataset: str,
) -> SideRows:
    """The side's rows from ``table`` (its key, group and value columns)."""
    keys = table.column(key).to_pylist()
    text = [str(k).strip().upper() if k is not None else "" for k in keys]
    ok = np.fromiter((bool(t) for t in text), dtype=bool, count=len(text))
    if is_credit_code_column(key) and text:
        ok &= valid_mask(text)
    rows = np.flatnonzero(ok)
    invalid = len(text) - len(rows)
    if len(rows) > MAX_SET:
        raise FailedPrecondition(
            f"more than {MAX_SET:,} identifiers of {dataset} pass the conditions: filter more"
        )
    if not groups and not values and not unique:
        items = list(dict.fromkeys(text[i].encode() for i in rows))
        return SideRows(items, invalid, set_digest(items))
    items = [text[i].encode() for i in rows]
    if len(set(items)) != len(items):
        raise FailedPrecondition(
            f"the join key {key!r} repeats in {dataset}: a join aggregate joins one row per "
            "identifier"
        )
    kept = table.take(pa.array(rows)) if invalid else table
    found: list[tuple[object, ...]] = []
    index = None
    if groups:
        seen: dict[tuple[object, ...], int] = {}
        cols = [kept.column(c).to_pylist() for c in groups]
        index = np.fromiter(
            (seen.setdefault(t, len(seen)) for t in zip(*cols, strict=True)),
            dtype=np.int32,
            count=len(items),
        )
        found = list(seen)
    vals = [kept.column(c).to_pylist() for c in values]
    return SideRows(items, invalid, set_digest(items), found, index, vals)
