"""Registration check: does the file hold what its descriptor declares? And a quality report.

The file is streamed in record batches, so a large dataset is checked in bounded memory.
Any mismatch is refused with a reason that names the column, the declared type and the
file's. A file's column may hold the declared type or a lossless widening of it (an int8
in an int32 column, a decimal(12,2) in a decimal(15,2) one, a dictionary-encoded string
in a string one, timestamps in any unit): every batch is converted to the declared types
as the engine will load it (``column_types.ColumnType.arrow``), so a value that does not
convert (a timestamp finer than a microsecond) is refused here, not at the first query.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from gateway.column_types import parse_type, suggested
from gateway.dataset_file import OpenFile, opened
from gateway.descriptor import DatasetDescriptor
from gateway.errors import InvalidArgument

if TYPE_CHECKING:
    import pyarrow.csv as pacsv

Number = int | float | Decimal


@dataclass(frozen=True)
class ColumnQuality:
    name: str
    null_rate: float
    min: float | None = None
    max: float | None = None


@dataclass(frozen=True)
class QualityReport:
    rows: int
    columns: tuple[ColumnQuality, ...]
    file_bytes: int
    sha256: str

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(data: dict) -> QualityReport:
        cols = tuple(ColumnQuality(**c) for c in data["columns"])
        return QualityReport(data["rows"], cols, data["file_bytes"], data["sha256"])


def arrow_schema(desc: DatasetDescriptor) -> pa.Schema:
    """The declared columns as the engine loads them."""
    return pa.schema([(c.name, parse_type(c.type).arrow) for c in desc.columns])


def _compatible(declared: str, actual: pa.DataType) -> bool:
    """Exact type, or a lossless widening of it (int32 -> int64, float32 -> float64...)."""
    return parse_type(declared).accepts(actual)


def mismatch(column: str, declared: str, actual: pa.DataType) -> str:
    """Why a file's column does not hold its declared type, and what would fit."""
    reason = (
        f"schema mismatch: column {column!r} is declared {declared} but the file holds {actual}"
    )
    hint = suggested(actual)
    return f"{reason}: declare it {hint}" if hint is not None else reason


def _conformed(batch: pa.RecordBatch, schema: pa.Schema, path: Path) -> pa.RecordBatch:
    """The batch in the declared types (checked compatible), as the engine will load it."""
    columns = []
    for field in schema:
        column = batch.column(field.name)
        if column.type != field.type:
            try:
                column = column.cast(field.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                raise InvalidArgument(_unconvertible(path, field, column.type)) from None
        columns.append(column)
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def _unconvertible(path: Path, field: pa.Field, actual: pa.DataType) -> str:
    if pa.types.is_timestamp(field.type):
        return (
            f"{path.name}: column {field.name!r} holds {actual} values that are not whole "
            "microseconds (or are out of range): the engine keeps timestamps in microseconds"
        )
    return (
        f"{path.name}: column {field.name!r} holds {actual} values that do not convert to "
        f"{field.type}"
    )


def _check_names(declared: list[str], actual: list[str]) -> None:
    twice = next((c for i, c in enumerate(actual) if c in actual[:i]), None)
    if twice is not None:  # a header `x,x`: which of the two would be the declared one?
        raise InvalidArgument(f"schema mismatch: the file has two columns named {twice!r}")
    missing = [c for c in declared if c not in actual]
    extra = [c for c in actual if c not in declared]
    if missing:
        raise InvalidArgument(f"schema mismatch: declared column {missing[0]!r} is not in the file")
    if extra:
        raise InvalidArgument(f"schema mismatch: file has undeclared column {extra[0]!r}")


def _parquet_batches(desc: DatasetDescriptor, source: str, path: Path) -> Iterator[pa.RecordBatch]:
    """``source`` is read; ``path`` names it in messages."""
    import pyarrow.parquet as pq  # file readers load on first use: idle nodes stay small

    try:
        pfile = pq.ParquetFile(source)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InvalidArgument(f"{path.name} is not a readable Parquet file: {exc}") from None
    schema = pfile.schema_arrow
    _check_names([c.name for c in desc.columns], schema.names)
    for col in desc.columns:
        actual = schema.field(col.name).type
        if not _compatible(col.type, actual):
            raise InvalidArgument(mismatch(col.name, col.type, actual))
    declared = arrow_schema(desc)
    try:
        for batch in pfile.iter_batches(batch_size=65536, columns=declared.names):
            yield _conformed(batch, declared, path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InvalidArgument(f"{path.name} is corrupt: {exc}") from None


MAX_HEADER_BYTES = 1 << 20  # a CSV header line longer is refused before it is read whole


def _csv_batches(desc: DatasetDescriptor, source: str, path: Path) -> Iterator[pa.RecordBatch]:
    """``source`` is read; ``path`` names it in messages."""
    try:
        with open(source, newline="", encoding="utf-8") as fh:
            line = fh.readline(MAX_HEADER_BYTES)
            if len(line) == MAX_HEADER_BYTES and not line.endswith("\n"):
                raise InvalidArgument(  # a file of one endless line (review, 2026-12-05)
                    f"{path.name}: its header line is longer than {MAX_HEADER_BYTES} "
                    "characters, so not a CSV file's"
                )
            header = next(csv.reader([line]), None)
    except UnicodeDecodeError:
        raise InvalidArgument(f"{path.name} is not UTF-8 text, so not a CSV file") from None
    except csv.Error as exc:
        raise InvalidArgument(f"{path.name}: its header is not CSV ({exc})") from None
    if not header:
        raise InvalidArgument(f"{path.name} is empty: a CSV file needs a header row")
    _check_names([c.name for c in desc.columns], header)
    import pyarrow.csv as pacsv

    try:
        reader = pacsv.open_csv(
            source,
            read_options=pacsv.ReadOptions(block_size=1 << 20),
            convert_options=csv_options(desc),
        )
        yield from reader
    except (pa.ArrowInvalid, OSError) as exc:
        raise InvalidArgument(f"{path.name} does not match its declared schema: {exc}") from None


def csv_options(desc: DatasetDescriptor) -> pacsv.ConvertOptions:
    """How a CSV file is read: each column parsed straight into its declared type (a
    decimal with no more digits than declared, a zoned timestamp with its offset)."""
    import pyarrow.csv as pacsv

    return pacsv.ConvertOptions(column_types=arrow_schema(desc), strings_can_be_null=False)


def check_file(desc: DatasetDescriptor, path: Path) -> QualityReport:
    """Stream the file, refuse a mismatch, and measure rows, null rates and min/max; the
    hash and size are of the very bytes checked (one descriptor: ``dataset_file``), and
    the file must be at ``path`` itself (absolute, as the catalog resolved it)."""
    if not path.exists():
        raise InvalidArgument(f"dataset file {path} does not exist")
    with opened(path, InvalidArgument, f"dataset file {path}") as f:
        if f.real != path:  # a folder on its path replaced since it was resolved
            raise InvalidArgument(
                f"dataset file {path} is not where its path led when it was checked: "
                "register it again"
            )
        report = _measure(desc, f, path)
        if not f.unchanged():
            raise InvalidArgument(
                f"dataset file {path} changed while it was checked: register it again"
            )
        return report


def _measure(desc: DatasetDescriptor, f: OpenFile, path: Path) -> QualityReport:
    reader = _parquet_batches if desc.format == "parquet" else _csv_batches
    batches = reader(desc, f.path, path)
    rows = 0
    nulls = {c.name: 0 for c in desc.columns}
    lo: dict[str, Number | None] = {c.name: None for c in desc.columns}
    hi: dict[str, Number | None] = {c.name: None for c in desc.columns}
    numeric = [c.name for c in desc.columns if parse_type(c.type).numeric]
    for batch in batches:
        rows += batch.num_rows
        for name in nulls:
            nulls[name] += batch.column(name).null_count
        for name in numeric:
            mm = pc.min_max(batch.column(name))
            bmin, bmax = mm["min"].as_py(), mm["max"].as_py()
            if bmin is not None and bmin == bmin and bmax == bmax:  # a batch all NaN: none
                lo[name] = bmin if lo[name] is None else min(lo[name], bmin)
                hi[name] = bmax if hi[name] is None else max(hi[name], bmax)
    columns = tuple(
        ColumnQuality(
            name=c.name,
            null_rate=(nulls[c.name] / rows) if rows else 0.0,
            min=_float_or_none(lo[c.name]),
            max=_float_or_none(hi[c.name]),
        )
        for c in desc.columns
    )
    return QualityReport(rows, columns, f.size, f.sha256())


def _float_or_none(value: Number | None) -> float | None:
    """A number's min or max for the report (a decimal's as the nearest float)."""
    return None if value is None else float(value)
