"""One owner's rows for a PSI session or join: read, canonicalised, deduplicated.

Identifiers are matched byte for byte after hashing, so both owners must write them the
same way: stripped, upper case; a column named like ``credit_code`` holds Unified Social
Credit Codes, whose check characters are verified (a code that fails is dropped and
counted, never matched). A PSI counts distinct identifiers; a join aggregate joins one
row per identifier, so on a side with groups or values a key that repeats among the rows
the conditions keep is dropped with all its rows and counted as invalid ones are: a
refusal would tell whether two rows pass a condition, an exact and free answer past k and
DP (review, 2026-12-04). A value that is NaN or infinite is missing, as NULL is, for the
same reason.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gateway.credit_code import LENGTH, valid_rows
from gateway.errors import FailedPrecondition

MAX_SET = 2_000_000  # identifiers per side and session
ROWS_BYTES = 512 * 1024 * 1024  # what a side reads, duplicates and all, before deduplication


def is_credit_code_column(name: str) -> bool:
    return "credit_code" in name.lower()


@dataclass(frozen=True)
class SideRows:
    items: pa.Array  # canonical identifiers (binary), distinct: ``batch`` takes them out
    invalid: int  # dropped: empty, or a credit code whose check characters fail
    digest: str  # of the set, whatever its order (the differencing defence compares it)
    groups: list[tuple[object, ...]] = field(default_factory=list)  # distinct group keys
    group_index: np.ndarray | None = None  # per item: its group's index
    values: list[list[Any]] = field(default_factory=list)  # per value column, per item


def batch(items: pa.Array, start: int, stop: int) -> list[bytes]:
    """Identifiers ``start:stop`` as bytes: a million of them stay in one Arrow buffer
    (22 MB) rather than a million Python objects, and become bytes a batch at a time."""
    out: list[bytes] = items.slice(start, stop - start).to_pylist()
    return out


def set_digest(items: pa.Array) -> str:
    """Order-independent: the sorted identifiers, hashed (only equality is compared)."""
    ordered = pc.take(items, pc.sort_indices(items)) if len(items) else items
    h = hashlib.blake2b(digest_size=16)
    if len(ordered):
        _, offsets, data = ordered.buffers()
        start = ordered.offset
        ends = np.frombuffer(offsets, dtype=np.int32)[start : start + len(ordered) + 1]
        h.update(ends.tobytes())
        h.update(memoryview(data)[int(ends[0]) : int(ends[-1])])
    return h.hexdigest()


def _canonical_text(column: pa.ChunkedArray) -> pa.Array:
    """Identifiers as text; only strings and integers are identifiers (a float would
    match an integer once written as text: 123.0 and 123)."""
    kind = column.type
    if pa.types.is_dictionary(kind):
        column = pc.cast(column, kind.value_type)
        kind = kind.value_type
    if not (
        pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_integer(kind)
    ):
        raise FailedPrecondition(f"a join key must be a string or an integer column, not {kind}")
    text = column if pa.types.is_string(kind) else pc.cast(column, pa.string())
    out: pa.Array = pc.utf8_upper(pc.utf8_trim_whitespace(text)).combine_chunks()
    return out


def _credit_codes_valid(text: pa.Array) -> np.ndarray:
    """Per identifier: 18 bytes whose check characters hold (no Python string each)."""
    ok = np.zeros(len(text), dtype=bool)
    shaped = pc.fill_null(pc.equal(pc.binary_length(text), LENGTH), False).to_numpy(
        zero_copy_only=False
    )
    idx = np.flatnonzero(shaped)
    if len(idx):
        codes = pc.take(text, pa.array(idx)).cast(pa.binary())
        _, offsets, data = codes.buffers()
        ends = np.frombuffer(offsets, dtype=np.int32)[codes.offset : codes.offset + len(codes) + 1]
        raw = np.frombuffer(data, dtype=np.uint8)[int(ends[0]) : int(ends[-1])]
        ok[idx] = valid_rows(raw)
    return ok


def _present(value: Any) -> Any:
    """NULL for a float that is no number (NaN, inf): summing it would fail on that row."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _check_size(distinct: int, dataset: str) -> None:
    """The bound is on distinct identifiers, as docs/psi.md says: a side whose rows repeat
    its keys was refused under it (the raw read is bounded by ``ROWS_BYTES``)."""
    if distinct > MAX_SET:
        raise FailedPrecondition(
            f"more than {MAX_SET:,} identifiers of {dataset} pass the conditions: filter more"
        )


def canonical(
    table: pa.Table,
    key: str,
    groups: Sequence[str] = (),
    values: Sequence[str] = (),
    *,
    unique: bool,
    dataset: str,
) -> SideRows:
    """The side's rows from ``table`` (its key, group and value columns), in Arrow: a
    million identifiers cost tens of MB here, not hundreds."""
    text = _canonical_text(table.column(key))
    ok = pc.fill_null(pc.greater(pc.binary_length(text), 0), False).to_numpy(zero_copy_only=False)
    if is_credit_code_column(key) and len(text):
        ok &= _credit_codes_valid(text)
    rows = np.flatnonzero(ok)
    invalid = len(text) - len(rows)
    kept_text = (
        pc.take(text, pa.array(rows)).cast(pa.binary()) if invalid else text.cast(pa.binary())
    )
    distinct = pc.unique(kept_text)
    _check_size(len(distinct), dataset)
    if not groups and not values and not unique:
        return SideRows(distinct, invalid, set_digest(distinct))
    if len(distinct) != len(kept_text):  # repeated keys: out, with every row
        counts = pc.value_counts(kept_text)
        repeated = counts.field("values").filter(pc.greater(counts.field("counts"), 1))
        single = pc.invert(pc.is_in(kept_text, value_set=repeated)).to_numpy(zero_copy_only=False)
        invalid += len(kept_text) - int(single.sum())
        rows = rows[single]
        kept_text = kept_text.filter(pa.array(single))
    kept = table.take(pa.array(rows)) if invalid else table
    found: list[tuple[object, ...]] = []
    index = None
    if groups:
        seen: dict[tuple[object, ...], int] = {}
        cols = [kept.column(c).to_pylist() for c in groups]
        index = np.fromiter(
            (seen.setdefault(t, len(seen)) for t in zip(*cols, strict=True)),
            dtype=np.int32,
            count=len(kept_text),
        )
        found = list(seen)
    vals = [[_present(v) for v in kept.column(c).to_pylist()] for c in values]
    return SideRows(kept_text, invalid, set_digest(kept_text), found, index, vals)
