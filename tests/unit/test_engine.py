"""The local engine: locked down, and a query that outlives its deadline is interrupted."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gateway import descriptor
from gateway.catalog import CatalogEntry
from gateway.engine import Engine, data_version
from gateway.engine_errors import EngineError
from gateway.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    ResourceExhausted,
)
from gateway.quality import check_file


def test_deadline_interrupts_a_long_query() -> None:
    engine = Engine()
    try:
        t0 = time.monotonic()
        with pytest.raises(DeadlineExceeded):
            engine.run("SELECT COUNT(*) FROM range(1000000000) a, range(1000) b", timeout=0.2)
        assert time.monotonic() - t0 < 5
    finally:
        engine.close()


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM read_csv('/etc/passwd')",
        "COPY (SELECT 1) TO '/tmp/fedgate-should-not-exist.csv'",
        "INSTALL httpfs",
        "SET enable_external_access = true",
    ],
)
def test_engine_refuses_files_extensions_and_settings(sql: str) -> None:
    """Second line of defence: even SQL that skipped the parser cannot reach the outside."""
    engine = Engine()
    try:
        with pytest.raises(InvalidArgument):
            engine.run(sql, timeout=5)
    finally:
        engine.close()


def _entry(tmp_path: Path, name: str, values: list[int]) -> CatalogEntry:
    """A real dataset file and its quality report, as the catalog would hold them."""
    path = tmp_path / f"{name}-{len(values)}.parquet"
    pq.write_table(pa.table({"x": pa.array(values, pa.int64())}), path)
    desc = descriptor.DatasetDescriptor(
        name=name,
        title="t",
        description="t",
        department="t",
        level="L1",
        update_frequency="static",
        path=str(path),
        format="parquet",
        columns=(descriptor.ColumnSpec("x", "int64"),),
    )
    return CatalogEntry(desc, check_file(desc, path), "", "")


def test_derived_values_are_kept_only_beside_the_very_cached_result(tmp_path: Path) -> None:
    """Suppression is computed once per cached result and per tag (k); a table that is not
    the cached result (or a run without a data version) is always computed afresh."""
    engine = Engine(1)
    calls: list[int] = []

    def compute(table):  # type: ignore[no-untyped-def]
        calls.append(table.num_rows)
        return ("protected", table.num_rows)

    def size(value) -> int:  # type: ignore[no-untyped-def]
        return 10

    entry = _entry(tmp_path, "t", [1, 2, 3])
    v1 = data_version(entry)
    try:
        sql = f"SELECT x FROM {engine.ensure_loaded(entry)}"
        raw = engine.run(sql, version=v1)
        assert engine.run(sql, version=v1) is raw  # the exact result is kept
        assert engine.derive(sql, v1, raw, ("k", 5), compute, size) == ("protected", 3)
        assert engine.derive(sql, v1, raw, ("k", 5), compute, size) == ("protected", 3)
        assert calls == [3]
        engine.derive(sql, v1, raw, ("k", 10), compute, size)  # another k: computed again
        assert calls == [3, 3]
        other = engine.run(sql)  # no version: not the cached table
        assert other is not raw
        engine.derive(sql, v1, other, ("k", 5), compute, size)
        engine.derive(sql, "", other, ("k", 5), compute, size)
        assert calls == [3, 3, 3, 3]
    finally:
        engine.close()


def test_a_result_read_after_a_reload_is_not_kept_under_the_old_version(
    tmp_path: Path,
) -> None:
    """Another thread may reload the dataset between ensure_loaded() and run(): what the
    run read then is not the data of the version it was asked for, so it is not kept."""
    engine = Engine(1)
    old, new = _entry(tmp_path, "t", [1, 2, 3]), _entry(tmp_path, "t", [1, 2, 3, 4, 5])
    try:
        sql = f"SELECT COUNT(*) AS n FROM {engine.ensure_loaded(old)}"
        engine.ensure_loaded(new)  # the reload, meanwhile
        first = engine.run(sql, version=data_version(old))
        assert first.column("n").to_pylist() == [5]  # it did read the new data
        assert engine.run(sql, version=data_version(old)) is not first  # not kept
        kept = engine.run(sql, version=data_version(new))
        assert engine.run(sql, version=data_version(new)) is kept
    finally:
        engine.close()


BIG_GROUP_BY = (  # 1.9 M groups: more than MEMORY holds, so it spills or fails
    "SELECT count(*), sum(c) FROM "
    "(SELECT hash(i) % 3000000 AS g, count(*) AS c FROM range(3000000) t(i) GROUP BY g)"
)
MEMORY = 32 * 1024**2


def test_a_scan_spills_only_into_its_own_folder_and_only_so_much(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DuckDB's default spills up to 90 % of the free disk into ./.tmp of the folder the
    node started from, and a killed node leaves it there."""
    monkeypatch.chdir(tmp_path)
    reference = Engine(1)
    try:
        expected = reference.run(BIG_GROUP_BY).to_pylist()
    finally:
        reference.close()
    spill = tmp_path / "spill"
    left = spill / "scan" / "duckdb_temp_storage_left_by_a_kill.tmp"
    left.parent.mkdir(parents=True)
    left.write_bytes(b"x" * 4096)
    engines = {
        "enough": Engine(1, spill, spill_bytes=512 * 1024**2, memory_bytes=MEMORY),
        "too little disk": Engine(1, tmp_path / "small", spill_bytes=1024**2, memory_bytes=MEMORY),
        "no folder": Engine(1, None, memory_bytes=MEMORY),
        "no bytes": Engine(1, tmp_path / "none", spill_bytes=0, memory_bytes=MEMORY),
    }
    try:
        assert not left.exists()  # what a killed node left is removed at start
        assert engines["enough"].run(BIG_GROUP_BY).to_pylist() == expected
        for name in ("too little disk", "no folder", "no bytes"):
            with pytest.raises(ResourceExhausted, match="ran out of memory"):
                engines[name].run(BIG_GROUP_BY)
    finally:
        for engine in engines.values():
            engine.close()
    assert not (tmp_path / ".tmp").exists()
    assert not (tmp_path / "none").exists()


def test_a_result_past_its_bound_is_refused_before_it_is_held_whole() -> None:
    """An owner's exact result is read in batches: a GROUP BY of many groups (nearly all
    to be suppressed) stops at ``result_bytes``, not after the whole table is in memory."""
    engine = Engine(1, result_bytes=256 * 1024)
    many = "SELECT i % 200000 AS g, COUNT(*) AS n FROM range(400000) t(i) GROUP BY g"
    try:
        with pytest.raises(ResourceExhausted, match=r"over 262,144 bytes before suppression"):
            engine.run(many)
        with pytest.raises(ResourceExhausted):
            engine.run(many, max_bytes=1024)  # the caller's own bound
        assert engine.run(many, max_bytes=None).num_rows == 200_000  # bounded by the SQL
        few = engine.run("SELECT i % 3 AS g, COUNT(*) AS n FROM range(10) t(i) GROUP BY g")
        assert sorted(few.column("n").to_pylist()) == [3, 3, 4]
        # an engine error is still DuckDB's typed exception, classified, no value in it
        with pytest.raises(EngineError) as failed:
            engine.run("SELECT CAST('Shanghai' AS INTEGER) AS v")
        assert "Shanghai" not in str(failed.value)
    finally:
        engine.close()


_PEAK = """
import resource, sys
sys.path.insert(0, {root!r})
from gateway.engine import Engine, ResultTooLarge
engine = Engine(1, result_bytes=1024 * 1024)
engine.run("SELECT 1")  # DuckDB imported and opened: the baseline
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    engine.run("SELECT i, i * 2 AS j, repeat('x', 40) AS s FROM range(3000000) t(i)")
except ResultTooLarge:
    pass
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""


def test_a_result_past_its_bound_never_takes_its_size_in_memory() -> None:
    """Review (2026-12-04, night): the bound was checked after DuckDB's DB-API path had
    copied the whole result into the process (a 256 MB result raised the peak by
    264 MB). A fresh process, so its peak is this query's alone: the ~200 MB result
    stops at the bound, a batch or two past 1 MiB."""
    import subprocess
    import sys

    root = str(Path(__file__).resolve().parents[2])
    out = subprocess.run(
        [sys.executable, "-c", _PEAK.format(root=root)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    grew_mb = int(out.stdout.strip())
    assert grew_mb < 60, f"the peak grew {grew_mb} MB while refusing a ~200 MB result"


def test_closing_stops_the_watchdog() -> None:
    engine = Engine(1)
    engine.run("SELECT 1", timeout=5)  # starts the watchdog thread
    thread = engine._watchdog._thread
    assert thread is not None and thread.is_alive()
    engine.close()
    assert not thread.is_alive()


def test_the_watchdog_holds_no_more_than_twice_the_queries_running() -> None:
    """Review (2026-12-04): finished queries' deadlines stayed in its heap until they
    passed (a minute at the most), so it grew with the query rate, not what runs."""
    from gateway.engine import Watchdog

    class Cursor:
        interrupted = 0

        def interrupt(self) -> None:
            Cursor.interrupted += 1

    dog = Watchdog()
    try:
        running = [dog.watch(time.monotonic() + 3600, Cursor()) for _ in range(10)]
        for _ in range(5000):  # short queries, each done long before its deadline
            dog.release(dog.watch(time.monotonic() + 60, Cursor()))
        assert dog.held() <= 2 * len(running) + 64 + 1
        late = dog.watch(time.monotonic() + 0.05, Cursor())  # still watched after rebuilds
        deadline = time.monotonic() + 5
        while Cursor.interrupted == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert Cursor.interrupted == 1
        dog.release(late)
    finally:
        dog.stop()


@pytest.mark.parametrize("timeout", [0.0005, 0.002])
def test_a_deadline_that_passes_while_the_query_is_planned_still_interrupts_it(
    timeout: float,
) -> None:
    """Review (2026-12-04): an interrupt that came while DuckDB parsed and bound the query
    was lost, and the query ran on for seconds (a cross join until killed)."""
    engine = Engine()
    try:
        engine.run("SELECT 1", timeout=5)  # the watchdog thread and DuckDB started
        for _ in range(5):
            t0 = time.monotonic()
            with pytest.raises(DeadlineExceeded):
                engine.run(
                    "SELECT COUNT(*) FROM range(1000000000) a, range(1000) b", timeout=timeout
                )
            assert time.monotonic() - t0 < 2
    finally:
        engine.close()


def test_a_file_changed_since_registration_is_not_loaded(tmp_path: Path) -> None:
    """Review (2026-12-04): a file rewritten in place after registration was loaded under
    the registered sha256: its rows skipped every registration check, and the caches and
    the L2 noise took it for the registered data (two answers gave an edit away)."""
    engine = Engine(1)
    entry = _entry(tmp_path, "t", [1, 2, 3])
    pq.write_table(pa.table({"x": pa.array([7, 8, 9], pa.int64())}), entry.descriptor.path)
    try:
        with pytest.raises(FailedPrecondition, match="its file changed since it was registered"):
            engine.ensure_loaded(entry)
        again = dataclasses.replace(
            entry, quality=check_file(entry.descriptor, Path(entry.descriptor.path))
        )  # registered again: loads
        table = engine.ensure_loaded(again)
        assert engine.run(f"SELECT SUM(x) AS s FROM {table}").column("s").to_pylist() == [24]
    finally:
        engine.close()


def test_a_file_registered_again_with_other_types_is_loaded_anew(tmp_path: Path) -> None:
    """Review (2026-12-04): the loaded table and the kept results were keyed by the file's
    sha256 alone, so a column once declared a string stayed VARCHAR once declared int64."""
    path = tmp_path / "t.csv"
    path.write_text("x\n9\n100\n")

    def entry(kind: str) -> CatalogEntry:
        desc = descriptor.DatasetDescriptor(
            "t",
            "t",
            "t",
            "t",
            "L1",
            "static",
            str(path),
            "csv",
            (descriptor.ColumnSpec("x", kind),),
        )
        return CatalogEntry(desc, check_file(desc, path), "", "")

    engine = Engine(1)
    try:
        as_text, as_number = entry("string"), entry("int64")
        sql = f"SELECT MAX(x) AS m FROM {engine.ensure_loaded(as_text)}"
        assert engine.run(sql, version=data_version(as_text)).column("m").to_pylist() == ["9"]
        engine.ensure_loaded(as_number)
        assert engine.run(sql, version=data_version(as_number)).column("m").to_pylist() == [100]
    finally:
        engine.close()


def test_a_file_read_since_its_registration_still_loads(tmp_path: Path) -> None:
    """Review (2026-12-04): the file's stat was compared whole (access time and whole
    seconds): the hash's own read moved a week-old access time, and the first query after
    a restart was refused as "changed while it was read"."""
    entry = _entry(tmp_path, "t", [1, 2, 3])
    path = Path(entry.descriptor.path)
    week_ago = time.time() - 7 * 86400
    os.utime(path, (week_ago, path.stat().st_mtime))
    engine = Engine(1)
    try:
        assert engine.ensure_loaded(entry) == "ds_t"
    finally:
        engine.close()


def test_a_refused_file_is_refused_again_without_reading_it_until_it_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review (2026-12-04): a refused file was hashed whole again on every query, under
    the engine's lock (any analyst could keep it busy)."""
    from gateway import engine as engine_mod

    hashed: list[str] = []
    real = engine_mod.check_unchanged

    def counted(entry: CatalogEntry, digest: str) -> None:  # a spy: the real check runs
        hashed.append(entry.descriptor.name)
        real(entry, digest)

    monkeypatch.setattr(engine_mod, "check_unchanged", counted)
    entry = _entry(tmp_path, "t", [1, 2, 3])
    path = Path(entry.descriptor.path)
    registered = path.read_bytes()
    pq.write_table(pa.table({"x": pa.array([7, 8, 9], pa.int64())}), path)
    engine = Engine(1)
    try:
        for _ in range(5):
            with pytest.raises(FailedPrecondition, match="changed since it was registered"):
                engine.ensure_loaded(entry)
        assert hashed == ["t"]  # judged once for this state of the file
        path.write_bytes(registered)  # put back: the file changed, judged afresh
        assert engine.ensure_loaded(entry) == "ds_t" and hashed == ["t", "t"]
    finally:
        engine.close()
