"""Registration checks stream the file and refuse mismatches with the column's name."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gateway.descriptor import ColumnSpec, DatasetDescriptor
from gateway.errors import InvalidArgument
from gateway.quality import check_file


def _desc(path: Path, fmt: str = "parquet", **types: str) -> DatasetDescriptor:
    cols = tuple(ColumnSpec(n, t) for n, t in types.items())
    return DatasetDescriptor("t", "T", "", "Dept", "L2", "daily", str(path), fmt, cols)


def test_report_over_many_batches(tmp_path: Path) -> None:
    n = 200_000  # more than one 64k batch
    table = pa.table(
        {
            "x": pa.array([None if i % 10 == 0 else i for i in range(n)], pa.int64()),
            "d": pa.array([dt.date(2025, 1, 1)] * n),
            "s": pa.array(["a"] * n),
        }
    )
    pq.write_table(table, tmp_path / "t.parquet")
    q = check_file(
        _desc(tmp_path / "t.parquet", x="int64", d="date", s="string"), tmp_path / "t.parquet"
    )
    assert q.rows == n
    x = q.columns[0]
    assert x.null_rate == pytest.approx(0.1) and x.min == 1 and x.max == n - 1
    assert q.columns[1].min is None and len(q.sha256) == 64


def test_int32_widens_to_declared_int64_but_string_does_not(tmp_path: Path) -> None:
    pq.write_table(pa.table({"x": pa.array([1, 2], pa.int32())}), tmp_path / "a.parquet")
    assert check_file(_desc(tmp_path / "a.parquet", x="int64"), tmp_path / "a.parquet").rows == 2
    with pytest.raises(InvalidArgument, match="'x' is declared string"):
        check_file(_desc(tmp_path / "a.parquet", x="string"), tmp_path / "a.parquet")


def test_extra_column_in_file_is_refused(tmp_path: Path) -> None:
    pq.write_table(pa.table({"x": [1], "secret": ["s"]}), tmp_path / "a.parquet")
    with pytest.raises(InvalidArgument, match="undeclared column 'secret'"):
        check_file(_desc(tmp_path / "a.parquet", x="int64"), tmp_path / "a.parquet")


def test_csv_header_and_values(tmp_path: Path) -> None:
    p = tmp_path / "a.csv"
    p.write_text("x,y\n1,true\n2,false\n")
    assert check_file(_desc(p, "csv", x="int64", y="bool"), p).rows == 2
    p.write_text("")
    with pytest.raises(InvalidArgument, match="header row"):
        check_file(_desc(p, "csv", x="int64"), p)
    p.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(InvalidArgument, match="not UTF-8"):
        check_file(_desc(p, "csv", x="int64"), p)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="does not exist"):
        check_file(_desc(tmp_path / "none.parquet", x="int64"), tmp_path / "none.parquet")
