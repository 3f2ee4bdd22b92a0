"""Registration check: does the file hold what its descriptor declares? And a quality report.

The file is streamed in record batches, so a large dataset is checked in bounded memory.
Any mismatch is refused with a reason that names the column.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from gateway.descriptor import DatasetDescriptor
from gateway.errors import InvalidArgument

ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "int64": pa.int64(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
    "date": pa.date32(),
}
_NUMERIC = {"int64", "float64"}


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


def _compatible(declared: str, actual: pa.DataType) -> bool:
    """Exact type, or a lossless widening of it (int32 -> int64, float32 -> float64...)."""
    if declared == "string":
        return pa.types.is_string(actual) or pa.types.is_large_string(actual)
    if declared == "int64":
        return pa.types.is_integer(actual) and actual != pa.uint64()
    if declared == "float64":
        return pa.types.is_floating(actual)
    if declared == "bool":
        return pa.types.is_boolean(actual)
    if declared == "date":
        return pa.types.is_date(actual)
    return False


def _check_names(declared: list[str], actual: list[str]) -> None:
    missing = [c for c in declared if c not in actual]
    extra = [c for c in actual if c not in declared]
    if missing:
        raise InvalidArgument(f"schema mismatch: declared column {missing[0]!r} is not in the file")
    if extra:
        raise InvalidArgument(f"schema mismatch: file has undeclared column {extra[0]!r}")


def _parquet_batches(desc: DatasetDescriptor, path: Path) -> Iterator[pa.RecordBatch]:
    try:
        pfile = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InvalidArgument(f"{path.name} is not a readable Parquet file: {exc}") from None
    schema = pfile.schema_arrow
    _check_names([c.name for c in desc.columns], schema.names)
    for col in desc.columns:
        actual = schema.field(col.name).type
        if not _compatible(col.type, actual):
            raise InvalidArgument(
                f"schema mismatch: column {col.name!r} is declared {col.type} but the file "
                f"holds {actual}"
            )
    try:
        yield from pfile.iter_batches(batch_size=65536)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InvalidArgument(f"{path.name} is corrupt: {exc}") from None


def _csv_batches(desc: DatasetDescriptor, path: Path) -> Iterator[pa.RecordBatch]:
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            header = next(csv.reader(fh), None)
    except UnicodeDecodeError:
        raise InvalidArgument(f"{path.name} is not UTF-8 text, so not a CSV file") from None
    if not header:
        raise InvalidArgument(f"{path.name} is empty: a CSV file needs a header row")
    _check_names([c.name for c in desc.columns], header)
    types = {c.name: ARROW_TYPES[c.type] for c in desc.columns}
    try:
        reader = pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(block_size=1 << 20),
            convert_options=pacsv.ConvertOptions(column_types=types, strings_can_be_null=False),
        )
        yield from reader
    except (pa.ArrowInvalid, OSError) as exc:
        raise InvalidArgument(f"{path.name} does not match its declared schema: {exc}") from None


def check_file(desc: DatasetDescriptor, path: Path) -> QualityReport:
    """Stream the file, refuse a mismatch, and measure rows, null rates and min/max."""
    if not path.is_file():
        raise InvalidArgument(f"dataset file {path} does not exist")
    batches = _parquet_batches(desc, path) if desc.format == "parquet" else _csv_batches(desc, path)
    rows = 0
    nulls = {c.name: 0 for c in desc.columns}
    lo: dict[str, float | None] = {c.name: None for c in desc.columns}
    hi: dict[str, float | None] = {c.name: None for c in desc.columns}
    numeric = [c.name for c in desc.columns if c.type in _NUMERIC]
    for batch in batches:
        rows += batch.num_rows
        for name in nulls:
            nulls[name] += batch.column(name).null_count
        for name in numeric:
            mm = pc.min_max(batch.column(name))
            bmin, bmax = mm["min"].as_py(), mm["max"].as_py()
            if bmin is not None:
                lo[name] = bmin if lo[name] is None else min(lo[name], bmin)
                hi[name] = bmax if hi[name] is None else max(hi[name], bmax)
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    columns = tuple(
        ColumnQuality(
            name=c.name,
            null_rate=(nulls[c.name] / rows) if rows else 0.0,
            min=_float_or_none(lo[c.name]),
            max=_float_or_none(hi[c.name]),
        )
        for c in desc.columns
    )
    return QualityReport(rows, columns, path.stat().st_size, digest.hexdigest())


def _float_or_none(value: float | None) -> float | None:
    return None if value is None else float(value)
