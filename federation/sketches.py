"""Mergeable distribution sketches: HLL for approximate distinct counts, KLL for quantiles.

An owner cannot release a distinct count or a quantile as a partial (neither adds up
across owners), so it releases a *sketch* per group, serialized to bytes: the home unions
the owners' sketches per group and reads the estimate. The sketches are Apache
DataSketches' (``hll_sketch`` at ``lg_k`` 12 in HLL_8 form, ``kll_doubles_sketch`` at
k 200), whose binary formats are the same in its Java, C++ and Python releases.

Accuracy (the library's own figures, ``hll_sketch.get_rel_err`` and
``kll_doubles_sketch.get_normalized_rank_error``):

- distinct count: exact up to 384 distinct values in a group (the sketch is then a set
  of 26-bit hashes), beyond that a relative standard error of 1.62 % (1.04 / sqrt(4096);
  3.2 % at 95 %, 4.7 % at 99.7 %), whatever the number of owners.
- quantile: the value returned has a rank within 1.33 % of the one asked for, with 99 %
  confidence, whatever the number of rows or owners; it is one of the values sketched,
  never an interpolation; under 200 values per group it is exact.

What a sketch reveals to the node that merges it: an HLL sketch holds hashes of the
values (the hash is public: whoever holds it can test candidate values for presence),
and a KLL sketch holds some of the values themselves (all of them under 200 rows).

The library parses its formats trusting them (a flipped byte can crash the process), so
bytes from a peer are checked here first, field by field, and only a form this module
itself writes is accepted: an HLL sketch is rebuilt from its coupons or registers, a KLL
sketch's levels, sizes, order and weights are checked before the library sees it.
"""

from __future__ import annotations

import collections
import decimal
import functools
import importlib
import math
import struct
from collections.abc import Iterable
from typing import Any, NamedTuple, TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

HLL_LG_K = 12  # 4096 registers: 1.62 % relative standard error once merged
KLL_K = 200  # 1.33 % normalized rank error (99 % confidence)
MAX_SKETCH_BYTES = 64 * 1024  # one serialized sketch, from any peer
MAX_ITEMS = 1 << 53  # rows behind one KLL sketch (float64 counts stay exact)

_STRING_PREFIX = "\x01"  # DataSketches skips "" entirely: every string gets a prefix


class SketchError(ValueError):
    """Bytes that are not a sketch this module made, or values it cannot sketch."""


@functools.cache
def _ds() -> Any:  # datasketches: untyped, and 50 ms to import, only sketch queries need it
    return importlib.import_module("datasketches")


# --- HLL ---------------------------------------------------------------------------------
#
# DataSketches' HLL keeps a small sketch as a set of *coupons* (a 26-bit hash slot and a
# 6-bit value, exact counts up to 384 of them at lg_k 12) and a larger one as registers
# (HLL_8: one byte each). A peer's sketch is read into one of these two forms and written
# again by this module: the library only ever parses an image built here.

_HLL_FAMILY, _HLL_SER_VER = 7, 1
_LIST, _SET, _HLL = 0, 1, 2  # the current mode, in a mode byte's low bits
_HLL_8 = 2 << 2  # the target type, in the mode byte's next bits
_COMPACT, _OUT_OF_ORDER, _FULL_SIZE = 8, 16, 32  # flag bits (4, empty, is refused)
_HEAD = struct.Struct("<BBBBBBBB")  # preamble ints, version, family, lg_k, lg_arr, flags, ...
_HLL_PREAMBLE = struct.Struct("<BBBBBBBBdddii")  # ... + HIP, kxq0, kxq1, at cur_min, aux
_HLL_REGISTERS = 1 << HLL_LG_K
_HLL_SIZE = _HLL_PREAMBLE.size + _HLL_REGISTERS
_SET_START = 12  # a set's coupons follow the header and their count
# A set holds at most 3/4 of its largest table (2^(lg_k - 3) slots) before it becomes
# registers: beyond that the library's own reader would overfill it.
_MAX_COUPONS = 3 * (1 << (HLL_LG_K - 3)) // 4
_VALUE_SHIFT = 26  # a coupon is slot (26 bits) | value << 26, the value 1..63


@functools.cache
def _empty_hll() -> bytes:
    """The one accepted form of an empty HLL sketch (what a union of nothing gives)."""
    ds = _ds()
    return bytes(ds.hll_union(HLL_LG_K).get_result(ds.tgt_hll_type.HLL_8).serialize_compact())


class _Hll(NamedTuple):
    """A checked HLL sketch's content: unique coupons, or registers (never both)."""

    coupons: np.ndarray | None  # uint32, sorted
    registers: np.ndarray | None  # uint8, 2^lg_k of them


def _set_image(coupons: np.ndarray) -> bytes:
    """A compact coupon-set image; the library re-inserts each coupon when reading it."""
    count = len(coupons)
    table = 1 << max(5, (count - 1).bit_length())  # the library's computeLgArrInts(SET)
    if 4 * count > 3 * table:
        table <<= 1
    head = _HEAD.pack(
        3, _HLL_SER_VER, _HLL_FAMILY, HLL_LG_K, table.bit_length() - 1, _COMPACT, 0, _SET | _HLL_8
    )
    return head + struct.pack("<I", count) + coupons.astype("<u4").tobytes()


def _hll_image(registers: np.ndarray) -> bytes:
    """An HLL_8 image built from registers alone, with every derived field recomputed.
    Marked out of order (as a union's result is), so the library estimates from the
    registers only (its composite estimator) and no peer-sent accumulator is trusted.
    The sums of 2^-r are exact in float64 in any order (at most 43 significant bits)."""
    inverse = np.ldexp(1.0, -registers.astype(np.int64))
    low = registers < 32
    header = _HLL_PREAMBLE.pack(
        10,
        _HLL_SER_VER,
        _HLL_FAMILY,
        HLL_LG_K,
        0,  # lg_arr: unused in HLL mode
        _COMPACT | _OUT_OF_ORDER | _FULL_SIZE,
        0,  # cur_min: always 0 for HLL_8
        _HLL | _HLL_8,
        0.0,  # HIP accumulator: not used once out of order
        float(inverse[low].sum()),
        float(inverse[~low].sum()),
        int(np.count_nonzero(registers == 0)),  # registers at cur_min
        0,  # aux entries: HLL_8 has none
    )
    return header + registers.astype(np.uint8).tobytes()


def _image(content: _Hll | None) -> bytes:
    if content is None:
        return _empty_hll()
    if content.coupons is not None:
        return _set_image(content.coupons)
    assert content.registers is not None
    return _hll_image(content.registers)


def _coupons(data: bytes, start: int, count: int) -> np.ndarray:
    if len(data) != start + 4 * count:
        raise SketchError("an HLL sketch's size does not match its coupon count")
    coupons = np.frombuffer(data, "<u4", count, start).astype(np.uint32)
    values = coupons >> _VALUE_SHIFT
    if values.min() < 1 or np.unique(coupons).size != count:
        raise SketchError("an HLL sketch has an empty or repeated coupon")
    return np.sort(coupons)


def _parse_hll(data: object) -> _Hll | None:
    """A peer's HLL sketch read into coupons or registers (None when empty), every field
    checked: only the compact forms a sketch of lg_k 12, HLL_8, writes are accepted."""
    data = _checked_bytes(data)
    if data == _empty_hll():
        return None
    if len(data) < _HEAD.size:
        raise SketchError("an HLL sketch is cut short")
    pre, ver, fam, lg_k, lg_arr, flags, count, mode = _HEAD.unpack_from(data)
    if (ver, fam, lg_k) != (_HLL_SER_VER, _HLL_FAMILY, HLL_LG_K) or mode >> 2 != _HLL_8 >> 2:
        raise SketchError(f"not an HLL_8 sketch at lg_k {HLL_LG_K}")
    if flags & ~(_COMPACT | _OUT_OF_ORDER | _FULL_SIZE) or not flags & _COMPACT:
        raise SketchError("an HLL sketch must be compact and not empty")
    current = mode & 3
    if current == _LIST and pre == 2 and 1 <= count < 8:
        return _Hll(_coupons(data, _HEAD.size, count), None)
    if current == _SET and pre == 3 and count == 0 and len(data) >= _SET_START:
        (count,) = struct.unpack_from("<I", data, _HEAD.size)
        if not 1 <= count <= _MAX_COUPONS:
            raise SketchError("an HLL sketch's coupon count is out of range")
        return _Hll(_coupons(data, _SET_START, count), None)
    if current != _HLL or pre != 10 or lg_arr != 0 or count != 0 or len(data) != _HLL_SIZE:
        raise SketchError(f"not an HLL_8 sketch at lg_k {HLL_LG_K}")
    if _HLL_PREAMBLE.unpack_from(data)[-1] != 0:
        raise SketchError("an HLL_8 sketch has no exception table")
    registers = np.frombuffer(data, np.uint8, _HLL_REGISTERS, _HLL_PREAMBLE.size)
    if int(registers.max()) >= 1 << (32 - _VALUE_SHIFT):
        raise SketchError("an HLL register is out of range")
    return _Hll(None, registers)


def check_hll(data: object) -> bytes:
    """A peer's HLL sketch written again by this module, or SketchError."""
    return _image(_parse_hll(data))


def _union(parts: Iterable[_Hll]) -> _Hll | None:
    """What the library's union gives: the coupons' union while it fits a set, else the
    largest value per register, coupons folded into registers by their slot."""
    coupons: list[np.ndarray] = []
    registers: np.ndarray | None = None
    for part in parts:
        if part.coupons is not None:
            coupons.append(part.coupons)
        elif part.registers is not None:
            found = part.registers
            registers = found.copy() if registers is None else np.maximum(registers, found)
    merged = np.unique(np.concatenate(coupons)) if coupons else None
    if registers is None:
        if merged is None:
            return None
        if merged.size <= _MAX_COUPONS:
            return _Hll(merged, None)
        registers = np.zeros(_HLL_REGISTERS, np.uint8)
    if merged is not None:
        slots = (merged & (_HLL_REGISTERS - 1)).astype(np.int64)
        np.maximum.at(registers, slots, (merged >> _VALUE_SHIFT).astype(np.uint8))
    return _Hll(None, registers)


def merge_hll(sketches: Iterable[object]) -> bytes:
    """The union of HLL sketches (None counts as empty), as bytes (a test holds it equal
    to the library's own union)."""
    parts = (_parse_hll(data) for data in sketches if data is not None)
    return _image(_union(part for part in parts if part is not None))


def hll_estimate(data: object) -> int:
    """The distinct count a sketch estimates, rounded to a whole number (0 when empty)."""
    content = _parse_hll(data)
    if content is None:
        return 0
    return round(_ds().hll_sketch.deserialize(_image(content)).get_estimate())


# --- KLL ---------------------------------------------------------------------------------

_KLL_FAMILY, _KLL_M = 15, 8
_KLL_HEAD = struct.Struct("<BBBBHBx")  # preamble ints, serial version, family, flags, k, m
_KLL_FULL = struct.Struct("<QHBx")  # n, min_k, number of levels
_SORTED0, _SINGLE = 2, 4  # flag bits (1, empty: only the empty sketch itself is accepted)
_KLL_MAX_LEVELS = 61  # the library refuses a depth over 60


def _cap_aux_aux(k: int, depth: int) -> int:
    return (((k << 1) << depth) // 3**depth + 1) >> 1


def _level_capacity(k: int, depth: int) -> int:
    if depth <= 30:
        return _cap_aux_aux(k, depth)
    half = depth // 2
    return _cap_aux_aux(_cap_aux_aux(k, half), depth - half)


@functools.cache
def _kll_capacity(levels: int) -> int:
    """Items a KLL sketch of k KLL_K with ``levels`` levels holds: the library's
    ``kll_helper::compute_total_capacity``, which fixes where its items start."""
    return sum(max(_KLL_M, _level_capacity(KLL_K, levels - h - 1)) for h in range(levels))


@functools.cache
def _empty_kll() -> bytes:
    return bytes(_ds().kll_doubles_sketch(KLL_K).serialize())


def _check_kll_full(data: bytes, flags: int) -> int:
    """A sketch of two or more items: every field against the others. Returns n."""
    size = len(data)
    start = _KLL_HEAD.size + _KLL_FULL.size
    if size < start:
        raise SketchError("a KLL sketch is cut short")
    n, min_k, count = _KLL_FULL.unpack_from(data, _KLL_HEAD.size)
    if min_k != KLL_K or not 2 <= n <= MAX_ITEMS or not 1 <= count <= _KLL_MAX_LEVELS:
        raise SketchError("a KLL sketch's header is out of range")
    capacity = _kll_capacity(count)
    if size < start + 4 * count:
        raise SketchError("a KLL sketch is cut short")
    levels = [*struct.unpack_from(f"<{count}I", data, start), capacity]
    if any(b < a for a, b in zip(levels, levels[1:], strict=False)):
        raise SketchError("a KLL sketch's levels are out of order")
    items = capacity - levels[0]
    extremes = start + 4 * count
    if size != extremes + 8 * (2 + items):
        raise SketchError("a KLL sketch's size does not match its levels")
    values = np.frombuffer(data, np.float64, 2 + items, extremes)
    if np.isnan(values).any():
        raise SketchError("a KLL sketch holds NaN")
    low, high, retained = values[0], values[1], values[2:]
    if retained.size == 0 or retained.min() < low or retained.max() > high:
        raise SketchError("a KLL sketch's items lie outside its minimum and maximum")
    weight = 0
    for level in range(count):
        part = retained[levels[level] - levels[0] : levels[level + 1] - levels[0]]
        if (level > 0 or flags & _SORTED0) and bool((np.diff(part) < 0).any()):
            raise SketchError("a KLL sketch has an unsorted level")
        weight += part.size << level
    if weight != n:
        raise SketchError("a KLL sketch's weights do not add up to its count")
    return int(n)


def _kll_count(data: object) -> int:
    """The number of items behind a checked KLL sketch (its bytes are safe to parse)."""
    data = _checked_bytes(data)
    if data == _empty_kll():
        return 0
    if len(data) < _KLL_HEAD.size:
        raise SketchError("a KLL sketch is cut short")
    pre, ver, fam, flags, k, m = _KLL_HEAD.unpack(data[: _KLL_HEAD.size])
    if fam != _KLL_FAMILY or k != KLL_K or m != _KLL_M or flags & ~(_SORTED0 | _SINGLE):
        raise SketchError(f"not a KLL doubles sketch at k {KLL_K}")
    if flags & _SINGLE:
        if (pre, ver, len(data)) != (2, 2, _KLL_HEAD.size + 8):
            raise SketchError("a one-item KLL sketch is malformed")
        if math.isnan(struct.unpack_from("<d", data, _KLL_HEAD.size)[0]):
            raise SketchError("a KLL sketch holds NaN")
        return 1
    if (pre, ver) != (5, 1):
        raise SketchError("a KLL sketch's preamble is malformed")
    return _check_kll_full(data, flags)


def kll_count(data: object) -> int:
    """The number of values behind a peer's KLL sketch (checked), 0 for the empty one."""
    return _kll_count(data)


def kll_sketch(data: object) -> Any:
    """A peer's KLL sketch, checked, as the library's object."""
    _kll_count(data)
    return _ds().kll_doubles_sketch.deserialize(data)


def check_kll(data: object) -> bytes:
    """A peer's KLL sketch, checked (the same bytes), or SketchError."""
    _kll_count(data)
    return _checked_bytes(data)


def merge_kll(sketches: Iterable[object]) -> bytes:
    """The merge of KLL sketches (None counts as empty), as bytes."""
    ds = _ds()
    merged = ds.kll_doubles_sketch(KLL_K)
    total = 0
    for data in sketches:
        if data is None:
            continue
        total += _kll_count(data)
        if total > MAX_ITEMS:
            raise SketchError("the merged KLL sketch would count too many rows")
        merged.merge(ds.kll_doubles_sketch.deserialize(data))
    return bytes(merged.serialize())


def kll_quantile(data: object, q: float) -> float | None:
    """The q-quantile a KLL sketch estimates: the smallest retained value whose rank
    (the share of values at or below it) reaches q; for q 0 and 1 the exact minimum and
    maximum, which the sketch keeps. None for an empty sketch."""
    if not 0.0 <= q <= 1.0:
        raise SketchError("a quantile's fraction must be between 0 and 1")
    if _kll_count(data) == 0:
        return None
    sketch = _ds().kll_doubles_sketch.deserialize(data)
    if q == 0.0:
        return float(sketch.get_min_value())
    if q == 1.0:
        return float(sketch.get_max_value())
    return float(sketch.get_quantile(q, True))


def _checked_bytes(data: object) -> bytes:
    if not isinstance(data, bytes):
        raise SketchError("a sketch must be bytes")
    if len(data) > MAX_SKETCH_BYTES:
        raise SketchError(f"a sketch over {MAX_SKETCH_BYTES} bytes is refused")
    return data


# --- building sketches at an owner --------------------------------------------------------

ValueLists: TypeAlias = pa.Array | pa.ChunkedArray  # of lists (list or large_list)


def flatten_lists(values: ValueLists) -> tuple[np.ndarray, pa.Array, np.ndarray]:
    """A list array's per-list offsets into its non-NULL values, those values, and which
    lists are NULL (a NULL list is an empty group): list i's values are
    ``values[offsets[i]:offsets[i + 1]]``."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if not (pa.types.is_list(values.type) or pa.types.is_large_list(values.type)):
        raise SketchError(f"sketches are built from lists of values, not {values.type}")
    offsets = values.offsets.to_numpy().astype(np.int64)
    missing = values.is_null().to_numpy(zero_copy_only=False)
    child = values.values.slice(int(offsets[0]), int(offsets[-1] - offsets[0]))
    offsets = offsets - offsets[0]
    if child.null_count:
        valid = child.is_valid().to_numpy(zero_copy_only=False)
        kept = np.concatenate([[0], np.cumsum(valid, dtype=np.int64)])
        offsets = kept[offsets]
        child = child.filter(pa.array(valid))
    return offsets, child, missing


def group_lists(gid: np.ndarray, values: pa.Array | pa.ChunkedArray, groups: int) -> pa.Array:
    """(group number, value) rows to one list of values per group, for the builders: the
    other shape an owner's SQL may return (``list(x)`` per group is the first)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    order, bounds = _order(gid, len(values), groups)
    return pa.LargeListArray.from_arrays(pa.array(bounds, pa.int64()), values.take(order))


def _hll_items(values: pa.Array) -> list[Any]:
    """Values as what the HLL hashes, the same at every owner for the same declared type:
    integers, dates, times and timestamps as 64-bit integers (days, microseconds; a
    timestamp's instant in UTC), floats as doubles (the library folds -0.0 and NaN),
    decimals as their shortest decimal text, strings with a prefix."""
    kind = values.type
    if pa.types.is_dictionary(kind):
        return _hll_items(values.dictionary_decode())
    if pa.types.is_uint64(kind):  # above 2**63: the same bits as a signed integer
        return values.to_numpy(zero_copy_only=False).view(np.int64).tolist()
    if pa.types.is_integer(kind) or pa.types.is_boolean(kind):
        return values.cast(pa.int64()).to_numpy(zero_copy_only=False).tolist()
    if pa.types.is_floating(kind):
        return values.cast(pa.float64()).to_numpy(zero_copy_only=False).tolist()
    if pa.types.is_decimal(kind):
        return _hll_items(_decimal_text(values))
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        joined = pc.binary_join_element_wise(pa.scalar(_STRING_PREFIX), values, "")
        return list(joined.to_pylist())
    if pa.types.is_string_view(kind):
        return _hll_items(values.cast(pa.large_string()))
    numbers = _temporal_int64(values)
    if numbers is None:
        raise SketchError(f"approx_count_distinct cannot sketch values of type {kind}")
    return numbers.tolist()


_EXACT = decimal.Context(prec=100)  # more digits than any decimal128/256 holds


def _decimal_text(values: pa.Array) -> pa.Array:
    """Each decimal as its shortest plain text ("1.5" for 1.50 at any scale, "0" for
    zero): Arrow writes very small values in E notation, which Python's Decimal turns
    back into plain digits (only those: they are rare)."""
    text = values.cast(pa.string())
    text = pc.replace_substring_regex(text, r"(\.\d*?)0+$", r"\1")
    text = pc.replace_substring_regex(text, r"\.$", "")
    exponent = pc.match_substring(text, "E").to_numpy(zero_copy_only=False)
    if not exponent.any():
        return text
    plain = text.to_pylist()
    for i in np.flatnonzero(exponent).tolist():
        plain[i] = format(decimal.Decimal(plain[i]).normalize(_EXACT), "f")
    return pa.array(plain, pa.string())


def _temporal_int64(values: pa.Array) -> np.ndarray | None:
    """Dates as days, times, timestamps and durations as microseconds; None otherwise."""
    kind = values.type
    if pa.types.is_date(kind):
        target: pa.DataType = pa.date32()
    elif pa.types.is_timestamp(kind):
        target = pa.timestamp("us", kind.tz)
    elif pa.types.is_time(kind):
        target = pa.time64("us")
    elif pa.types.is_duration(kind):
        target = pa.duration("us")
    else:
        return None
    days = pa.types.is_date(kind)
    exact = values.cast(target, safe=False).cast(pa.int32() if days else pa.int64())
    return exact.to_numpy(zero_copy_only=False).astype(np.int64)


def hll_sketches(values: ValueLists) -> pa.Array:
    """One serialized HLL sketch per list of values (NULL values skipped; a NULL or empty
    list gives the empty sketch). Feed it ``list(DISTINCT x)``: the engine drops the
    repeats in parallel, and each distinct value is hashed once."""
    ds = _ds()
    offsets, child, missing = flatten_lists(values)
    items = _hll_items(child)
    out: list[bytes] = []
    for i in range(len(missing)):
        start, stop = int(offsets[i]), int(offsets[i + 1])
        if missing[i] or start == stop:
            out.append(_empty_hll())
            continue
        sketch = ds.hll_sketch(HLL_LG_K, ds.tgt_hll_type.HLL_8)
        collections.deque(map(sketch.update, items[start:stop]), maxlen=0)
        out.append(check_hll(bytes(sketch.serialize_compact())))
    return pa.array(out, pa.binary())


def _kll_floats(values: pa.Array) -> np.ndarray:
    """Values as float64 for a KLL sketch: numbers (decimals rounded to the nearest
    double), dates as days, times and timestamps as microseconds."""
    kind = values.type
    if pa.types.is_dictionary(kind):
        return _kll_floats(values.dictionary_decode())
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return values.cast(pa.float64(), safe=False).to_numpy(zero_copy_only=False)
    numbers = _temporal_int64(values)
    if numbers is None:
        raise SketchError(f"a quantile cannot be taken of values of type {kind}")
    return numbers.astype(np.float64)


def kll_sketches(values: ValueLists) -> pa.Array:
    """One serialized KLL sketch per list of values (NULL and NaN values skipped)."""
    ds = _ds()
    offsets, child, missing = flatten_lists(values)
    # A writable copy: the library takes no read-only array (Arrow's are).
    floats = np.array(_kll_floats(child), dtype=np.float64, order="C", copy=True)
    out: list[bytes] = []
    for i in range(len(missing)):
        start, stop = int(offsets[i]), int(offsets[i + 1])
        if missing[i] or start == stop:
            out.append(_empty_kll())
            continue
        sketch = ds.kll_doubles_sketch(KLL_K)
        sketch.update(floats[start:stop])
        out.append(bytes(sketch.serialize()))
    return pa.array(out, pa.binary())


# --- at the home: per group ---------------------------------------------------------------


def _order(gid: np.ndarray, count: int, groups: int) -> tuple[np.ndarray, np.ndarray]:
    """The rows in group order (stable), and where each group starts in that order."""
    gid = np.asarray(gid, dtype=np.int64)
    if gid.shape != (count,) or (gid.size and (gid.min() < 0 or gid.max() >= groups)):
        raise SketchError("group numbers must be one per row, from 0 to groups - 1")
    order = pc.sort_indices(pa.array(gid)).to_numpy()  # Arrow's sort is stable
    return order, np.searchsorted(gid[order], np.arange(groups + 1))


def merge_groups(
    kind: str, gid: np.ndarray, sketches: pa.Array | pa.ChunkedArray, groups: int
) -> pa.Array:
    """Per group number (0 to groups - 1), the merge of the sketches in its rows: what the
    partial merge calls for a state column of kind "hll" or "kll"."""
    merge = {"hll": merge_hll, "kll": merge_kll}.get(kind)
    if merge is None:
        raise SketchError(f"no sketch of kind {kind!r}")
    column = sketches.to_pylist()
    order, bounds = _order(gid, len(column), groups)
    return pa.array(
        [merge(column[j] for j in order[bounds[g] : bounds[g + 1]]) for g in range(groups)],
        pa.binary(),
    )


def hll_estimates(sketches: pa.Array | pa.ChunkedArray) -> pa.Array:
    """The distinct count of each sketch (0 for a NULL or empty one)."""
    return pa.array([0 if s is None else hll_estimate(s) for s in sketches.to_pylist()], pa.int64())


def kll_quantiles(
    sketches: pa.Array | pa.ChunkedArray, q: float, value_type: pa.DataType | None = None
) -> pa.Array:
    """The q-quantile of each sketch, NULL for an empty one: as float64, or converted back
    to ``value_type`` (the column's own type; exact, since the quantile is one of the
    values sketched, for integers below 2**53, dates and timestamps)."""
    values = [None if s is None else kll_quantile(s, q) for s in sketches.to_pylist()]
    floats = pa.array(values, pa.float64())
    return floats if value_type is None else as_type(floats, value_type)


def as_type(floats: pa.Array, kind: pa.DataType) -> pa.Array:
    """Quantiles computed as float64 back in a column's type (integers and times rounded;
    exact for a value that was sketched, since it came from that type)."""
    if pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return floats.cast(kind, safe=False)
    if pa.types.is_integer(kind):
        return pc.round(floats).cast(kind)
    numbers = pc.round(floats).cast(pa.int64())
    if pa.types.is_date(kind):
        return numbers.cast(pa.int32()).cast(pa.date32()).cast(kind)
    for check, unit in (
        (pa.types.is_timestamp, pa.timestamp("us", getattr(kind, "tz", None))),
        (pa.types.is_time, pa.time64("us")),
        (pa.types.is_duration, pa.duration("us")),
    ):
        if check(kind):
            return numbers.cast(unit).cast(kind, safe=False)
    raise SketchError(f"a quantile cannot be given as type {kind}")
