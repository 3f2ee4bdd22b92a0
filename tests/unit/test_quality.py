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


# --- the declared types beyond the first five -----------------------------------------


def test_every_type_registers_from_its_own_arrow_type(tmp_path: Path) -> None:
    from decimal import Decimal

    n = 100_000  # two batches
    prices = [None if i % 4 == 0 else Decimal(i) / 100 for i in range(n)]
    table = pa.table(
        {
            "price": pa.array(prices, pa.decimal128(15, 2)),
            "qty": pa.array([i % 100 - 50 for i in range(n)], pa.int8()),
            "units": pa.array([i % 30_000 for i in range(n)], pa.int16()),
            "visits": pa.array(list(range(n)), pa.int32()),
            "ratio": pa.array([i / 8 for i in range(n)], pa.float32()),
            "seen": pa.array(
                [dt.datetime(2025, 1, 1, 0, 0, i % 60) for i in range(n)], pa.timestamp("ns")
            ),
            "seen_tz": pa.array(
                [dt.datetime(2025, 1, 1, tzinfo=dt.UTC)] * n, pa.timestamp("s", "UTC")
            ),
            "region": pa.array(["east", "west"] * (n // 2)).dictionary_encode(),
        }
    )
    path = tmp_path / "typed.parquet"
    pq.write_table(table, path)
    types = dict(
        price="decimal(15,2)",
        qty="int8",
        units="int16",
        visits="int32",
        ratio="float32",
        seen="timestamp",
        seen_tz="timestamptz",
        region="string",
    )
    q = check_file(_desc(path, **types), path)
    by_name = {c.name: c for c in q.columns}
    assert q.rows == n
    assert by_name["price"].null_rate == 0.25
    assert (by_name["price"].min, by_name["price"].max) == (0.01, float(Decimal(n - 1) / 100))
    assert (by_name["qty"].min, by_name["qty"].max) == (-50, 49)
    assert by_name["ratio"].max == (n - 1) / 8 and by_name["seen"].min is None


@pytest.mark.parametrize(
    ("declared", "array", "message"),
    [
        (
            "float64",
            pa.array([1], pa.decimal128(15, 2)),
            r"'x' is declared float64 but the file holds decimal128\(15, 2\): "
            r"declare it decimal\(15,2\)",
        ),
        (
            "decimal(15,2)",
            pa.array([1], pa.decimal128(15, 3)),
            r"declared decimal\(15,2\) but the file holds decimal128\(15, 3\): declare it "
            r"decimal\(15,3\)",
        ),
        (
            "int8",
            pa.array([1], pa.int16()),
            "declared int8 but the file holds int16: declare it int16",
        ),
        (
            "int32",
            pa.array([1], pa.uint32()),
            "declared int32 but the file holds uint32: declare it int64",
        ),
        (
            "timestamp",
            pa.array([1], pa.timestamp("us", "Asia/Shanghai")),
            "declared timestamp but the file holds timestamp.*: declare it timestamptz",
        ),
        (
            "timestamptz",
            pa.array([1], pa.timestamp("us")),
            "declared timestamptz but the file holds timestamp.*: declare it timestamp",
        ),
        ("string", pa.array([1], pa.int32()), "declared string but the file holds int32"),
        ("int64", pa.array([1], pa.uint64()), "declared int64 but the file holds uint64$"),
    ],
)
def test_a_mismatch_names_declared_and_actual_and_what_would_fit(
    tmp_path: Path, declared: str, array: pa.Array, message: str
) -> None:
    path = tmp_path / "a.parquet"
    pq.write_table(pa.table({"x": array}), path)
    with pytest.raises(InvalidArgument, match=message):
        check_file(_desc(path, x=declared), path)


def test_timestamps_finer_than_a_microsecond_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "a.parquet"
    pq.write_table(pa.table({"t": pa.array([1_700_000_000_000_000_001], pa.timestamp("ns"))}), path)
    with pytest.raises(InvalidArgument, match="'t' holds timestamp.* not whole microseconds"):
        check_file(_desc(path, t="timestamp"), path)
    pq.write_table(pa.table({"t": pa.array([1_700_000_000_000_000_000], pa.timestamp("ns"))}), path)
    assert check_file(_desc(path, t="timestamp"), path).rows == 1


def test_csv_is_parsed_into_the_declared_types(tmp_path: Path) -> None:
    p = tmp_path / "a.csv"
    p.write_text("price,qty,at\n12.50,-3,2025-01-02T08:00:00+08:00\n,7,2025-01-02 00:00:00Z\n")
    q = check_file(_desc(p, "csv", price="decimal(15,2)", qty="int8", at="timestamptz"), p)
    assert q.rows == 2 and q.columns[0].max == 12.5 and q.columns[0].null_rate == 0.5
    for text, declared, words in (
        ("price\n1.255\n", "decimal(15,2)", "does not match its declared schema"),
        ("price\n300\n", "int8", "does not match its declared schema"),
        ("price\n2025-01-02 08:00:00\n", "timestamptz", "expected a zone offset"),
    ):
        p.write_text(text)
        with pytest.raises(InvalidArgument, match=words):
            check_file(_desc(p, "csv", price=declared), p)


def test_a_file_with_two_columns_of_one_name_is_refused(tmp_path: Path) -> None:
    """Review (2026-12-04): a header ``x,x`` ended in a KeyError."""
    p = tmp_path / "a.csv"
    p.write_text("x,x\n1,2\n")
    with pytest.raises(InvalidArgument, match="two columns named 'x'"):
        check_file(_desc(p, "csv", x="int64"), p)


def test_a_float_range_is_measured_over_its_numbers_only(tmp_path: Path) -> None:
    """Review (2026-12-04): a batch all NaN made the measured range NaN (and a bucket
    check over it raised)."""
    values = [float("nan")] * 70_000 + [1.5, 2.5]  # the first batch holds only NaN
    pq.write_table(pa.table({"x": pa.array(values, pa.float64())}), tmp_path / "a.parquet")
    q = check_file(_desc(tmp_path / "a.parquet", x="float64"), tmp_path / "a.parquet")
    assert (q.columns[0].min, q.columns[0].max) == (1.5, 2.5)
