"""The local engine: DuckDB over a node's own datasets, locked down.

Datasets are read with Arrow (not by DuckDB) and loaded into an in-memory DuckDB
database. The database is then closed to the outside: no file system, no extensions,
configuration locked. The SQL it runs is generated from a validated tree, so these
settings are the second line of defence, not the first.

An engine error never carries DuckDB's text out of this module: that text quotes row
values and the generated SQL. It is classified by type into a fixed message
(``gateway.engine_errors``) and logged here, at WARNING, for the operator alone.
"""

from __future__ import annotations

import hashlib
import heapq
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from gateway.cache import BoundedCache, entry_cost
from gateway.catalog import CatalogEntry
from gateway.config import DEFAULT_SPILL_BYTES
from gateway.dataset_file import opened
from gateway.engine_errors import HOME, OWNER, EngineError, classify
from gateway.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    ResourceExhausted,
    Unavailable,
    loggable,
)
from gateway.quality import arrow_schema, csv_options

log = logging.getLogger("fedgate.engine")

RESULT_CACHE_BYTES = 64 * 1024 * 1024  # exact results kept for repeated questions
# ... and at most this many, whatever their bytes: each costs its SQL and ~4 KiB besides
# (gateway/cache.py), so distinct one-row questions fill the count, not the bytes.
RESULT_CACHE_ENTRIES = 4096
REINTERRUPT_SECONDS = 0.05  # a query past its deadline is interrupted again this often
# What a statement's result may hold in this process before it is protected: it is read
# in batches and refused past this, so a GROUP BY of millions of groups (nearly all of
# them to be suppressed) cannot hold an unbounded table outside DuckDB's memory_limit.
MAX_RESULT_BYTES = 64 * 1024 * 1024
BATCH_ROWS = 65_536

_CONFIG = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_community_extensions": False,
}


def _configure(conn: Any) -> None:
    """Run in UTC, then lock the configuration. UTC: a zoned timestamp compared with a
    literal without an offset ('2025-01-01 08:00') is the same instant at every owner and
    at the home, and a zoned result comes out of DuckDB in UTC (Arrow tz=UTC)."""
    conn.execute("SET GLOBAL TimeZone = 'UTC'")  # GLOBAL: every cursor's session
    conn.execute("SET lock_configuration = true")


@dataclass
class _Result:
    """An exact result, and values derived from this very table (see Engine.derive)."""

    table: pa.Table
    derived: dict[Hashable, Any] = field(default_factory=dict)


def table_name(dataset: str) -> str:
    return f"ds_{dataset}"


def data_version(entry: CatalogEntry) -> str:
    """What a loaded table and a kept result are of: the file's sha256 and the declared
    columns (the same file registered again with other types loads anew: review,
    2026-12-04, a column registered as a string stayed VARCHAR once declared int64)."""
    columns = repr([(c.name, c.type) for c in entry.descriptor.columns]).encode()
    return f"{entry.quality.sha256}:{hashlib.sha256(columns).hexdigest()[:16]}"


class _Transient(FailedPrecondition):
    """A file that could not be read this time (an I/O error, no memory): not kept."""


def check_unchanged(entry: CatalogEntry, digest: str) -> None:
    """The dataset's file is the one registered (its sha256): a file rewritten in place
    after registration would skip every registration check and be taken for the
    registered data by the caches and the L2 noise (review, 2026-12-04)."""
    name = entry.descriptor.name
    if digest != entry.quality.sha256:
        raise FailedPrecondition(
            f"dataset {name}: its file changed since it was registered; "
            "the operator must register it again (fedgate dataset register)"
        )


def read_dataset(entry: CatalogEntry, source: str) -> pa.Table:
    """The dataset in its declared types (``column_types.ColumnType.arrow``), whatever
    lossless form the file holds them in (checked at registration): DuckDB then sees an
    int8 as TINYINT, a decimal(15,2) as DECIMAL(15,2), a dictionary-encoded string as
    VARCHAR, a timestamp in microseconds, a zoned one in UTC. ``source`` names the file
    to read (``OpenFile.path``: the one checked)."""
    desc = entry.descriptor
    schema = arrow_schema(desc)
    if desc.format == "parquet":  # the readers load on first use (pyarrow.fs with them)
        import pyarrow.parquet as pq

        table = pq.read_table(source, columns=schema.names)
    else:
        import pyarrow.csv as pacsv

        table = pacsv.read_csv(source, convert_options=csv_options(desc))
    return table.select(schema.names).cast(schema)


class Watchdog:
    """One thread that interrupts queries past their deadline (no thread per query).

    Finished queries are only dropped from ``_live``; their heap items are discarded
    lazily (and the heap rebuilt once they outnumber the live ones, so it holds no more
    than twice the queries running, whatever their deadlines), and the thread is woken
    only when a new deadline is the earliest."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int]] = []
        self._live: dict[int, tuple[float, Any]] = {}
        self._next = 0
        self._thread: threading.Thread | None = None
        self._stopped = False

    def watch(self, deadline: float, cursor: Any) -> int:
        with self._cond:
            if self._stopped:
                raise Unavailable("the node is stopping")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="watchdog", daemon=True)
                self._thread.start()
            self._next += 1
            earliest = not self._heap or deadline < self._heap[0][0]
            heapq.heappush(self._heap, (deadline, self._next))
            self._live[self._next] = (deadline, cursor)
            if earliest:
                self._cond.notify()
            return self._next

    def release(self, token: int) -> None:
        with self._cond:
            self._live.pop(token, None)
            if len(self._heap) > 2 * len(self._live) + 64:
                self._heap = [(d, t) for t, (d, _c) in self._live.items()]
                heapq.heapify(self._heap)

    def held(self) -> int:
        """Heap items held (tests: bounded by the queries running)."""
        with self._cond:
            return len(self._heap)

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._heap and self._heap[0][1] not in self._live:
                    heapq.heappop(self._heap)
                if self._stopped:
                    return
                if not self._heap:
                    self._cond.wait()
                    continue
                deadline, token = self._heap[0]
                wait = deadline - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heap)
                _deadline, cursor = self._live[token]
                # Again a moment later until the query lets go: an interrupt that comes
                # while DuckDB still parses and binds is lost (review, 2026-12-04: a
                # query ran on for seconds past its deadline).
                heapq.heappush(self._heap, (time.monotonic() + REINTERRUPT_SECONDS, token))
            try:
                cursor.interrupt()
            except Exception:  # noqa: BLE001 - the query finished and closed its cursor
                log.debug("query finished before it could be interrupted")


class ResultTooLarge(ResourceExhausted):
    def __init__(self, max_bytes: int) -> None:
        super().__init__(
            f"the local engine's result is over {max_bytes:,} bytes before suppression: "
            "group by fewer or coarser keys, or filter more"
        )


def arrow_result(cursor: Any, sql: str, max_bytes: int | None = MAX_RESULT_BYTES) -> pa.Table:
    """The rows of one statement as an Arrow table, read in batches up to ``max_bytes``
    (None: the statement bounds its own rows, e.g. with a LIMIT).

    Through the relation's reader, which streams: DuckDB's DB-API path (``execute``)
    copies the whole result into this process before its first batch, outside DuckDB's
    ``memory_limit`` (review, 2026-12-04, night). A failure before the first batch (an
    aggregate's, a bind error) is DuckDB's own typed exception; one while rows stream
    (a scan's) comes as Arrow's ``OSError``, which the engine names by kind only."""
    reader = cursor.sql(sql).to_arrow_reader(BATCH_ROWS)
    batches = []
    held = 0
    try:
        for batch in reader:
            held += batch.nbytes
            if max_bytes is not None and held > max_bytes:
                raise ResultTooLarge(max_bytes)
            batches.append(batch)
    finally:
        reader.close()
    return pa.Table.from_batches(batches, schema=reader.schema)


class Engine:
    """One in-memory DuckDB per node; a cursor per query, so queries run in parallel.

    DuckDB is imported and opened on first use: a node that only serves its catalog
    stays small (about 45 MB less resident memory). A scan that does not fit in memory
    spills into ``spill_dir`` (this engine's alone: what a killed node left there is
    removed here), up to ``spill_bytes``; without a folder, or with 0 bytes, it fails
    with RESOURCE_EXHAUSTED instead. ``memory_bytes`` (0: DuckDB's default, 80 % of the
    machine's memory) bounds what the datasets and the scans hold in memory.
    """

    def __init__(
        self,
        threads: int = 0,
        spill_dir: Path | None = None,
        spill_bytes: int = DEFAULT_SPILL_BYTES,
        memory_bytes: int = 0,
        result_bytes: int = MAX_RESULT_BYTES,
    ) -> None:
        self._threads = threads or os.cpu_count() or 1
        self.result_bytes = result_bytes  # the most one statement's result may hold
        self._settings: dict[str, str | bool | int | float | list[str]] = {"temp_directory": ""}
        if spill_dir is not None and spill_bytes > 0:
            shutil.rmtree(spill_dir, ignore_errors=True)
            spill_dir.mkdir(parents=True, exist_ok=True)
            self._settings = {
                "temp_directory": str(spill_dir / "scan"),
                "max_temp_directory_size": f"{spill_bytes} bytes",
            }
        if memory_bytes:  # else DuckDB's default: 80 % of the machine's memory
            self._settings["memory_limit"] = f"{memory_bytes} bytes"
        self._lock = threading.Lock()
        self._conn: Any = None
        self._scratch_conn: Any = None
        self._duckdb: Any = None
        self._loaded: dict[str, str] = {}  # dataset -> data_version of the loaded table
        # dataset -> (data_version, file stamp, why) of a file refused as it stands
        self._refused: dict[str, tuple[str, tuple[int, ...], str]] = {}
        self._results = BoundedCache(
            RESULT_CACHE_BYTES, max_entries=RESULT_CACHE_ENTRIES, per_entry=entry_cost
        )
        self._results_lock = threading.Lock()  # not _lock: a dataset load holds that long
        self._loads = 0  # counts dataset (re)loads
        self._watchdog = Watchdog()

    @property
    def _db(self) -> Any:
        if self._conn is None:
            with self._lock:
                if self._conn is None:
                    import duckdb

                    config: dict[str, str | bool | int | float | list[str]] = {
                        **_CONFIG,
                        **self._settings,
                        "threads": self._threads,
                    }
                    conn = duckdb.connect(":memory:", config=config)
                    _configure(conn)
                    self._duckdb, self._conn = duckdb, conn
        return self._conn

    def ensure_loaded(self, entry: CatalogEntry) -> str:
        """Load (or reload after re-registration) a dataset; returns its table name."""
        name = entry.descriptor.name
        version = data_version(entry)
        if self._loaded.get(name) == version:
            return table_name(name)
        db = self._db
        with self._lock:
            if self._loaded.get(name) != version:
                data = self._read_checked(entry, version)
                with self._results_lock:  # no result of the old table is kept meanwhile
                    self._loads += 1
                    self._loaded.pop(name, None)
                staging = f"__load_{name}"
                db.register(staging, data)
                try:
                    db.execute(
                        f"CREATE OR REPLACE TABLE {table_name(name)} AS SELECT * FROM {staging}"
                    )
                except self._duckdb.Error as exc:
                    raise self._failed(exc, OWNER, "") from None
                finally:
                    db.unregister(staging)
                with self._results_lock:
                    self._loads += 1
                    self._loaded[name] = version
        return table_name(name)

    def _read_checked(self, entry: CatalogEntry, version: str) -> pa.Table:
        """The dataset's file, read only if it is the one registered, through one
        descriptor (``dataset_file``). A refusal is kept per file state, so that a
        refused file is not hashed again on every query."""
        name = entry.descriptor.name
        what = f"dataset {name}: its file"
        with opened(Path(entry.descriptor.path), FailedPrecondition, what) as f:
            # Its place first, never kept: a path put back is taken at once (diff review,
            # 2026-12-05: a refusal kept by the file's stamp outlived the fix).
            if f.real != Path(entry.descriptor.path):  # a folder on its path replaced
                raise FailedPrecondition(
                    f"dataset {name}: its path no longer leads to the file registered; the "
                    "operator must check it"
                )
            refused = self._refused.get(name)
            if refused is not None and refused[:2] == (version, f.stamp):
                raise FailedPrecondition(refused[2])
            digest = f.sha256()  # an I/O error is not kept: the next load reads again
            try:
                check_unchanged(entry, digest)
                try:
                    data = read_dataset(entry, f.path)
                except (OSError, MemoryError) as exc:  # the disk's or this process's: the
                    # next load reads again (not kept: review, 2026-12-05)
                    raise _Transient(f"{what} cannot be read ({type(exc).__name__})") from None
                except Exception as exc:  # noqa: BLE001 - its text may hold a cell value
                    log.warning("dataset %s did not load: %s", name, loggable(str(exc)))
                    raise FailedPrecondition(
                        f"dataset {name}: its file does not read as its declared types "
                        f"({type(exc).__name__}); the operator must register it again"
                    ) from None
            except _Transient:
                raise
            except FailedPrecondition as exc:
                if len(self._refused) >= 1024:
                    self._refused.clear()
                self._refused[name] = (version, f.stamp, exc.message)
                raise
            # the file as it was hashed: not rewritten, nor relinked or its times reset
            # (a write with its modification time put back moves its change time)
            if not f.unchanged():
                raise Unavailable(f"dataset {name}: its file changed while it was read")
        self._refused.pop(name, None)
        return data

    def run(
        self,
        sql: str,
        *,
        timeout: float | None = None,
        version: str = "",
        request_id: str = "",
        max_bytes: int | None = 0,
    ) -> pa.Table:
        """Run generated SQL; interrupted (DEADLINE_EXCEEDED) if it outlives ``timeout``,
        refused (RESOURCE_EXHAUSTED) if its result is over ``max_bytes`` (0: this engine's
        ``result_bytes``; None: the SQL bounds its rows itself), see ``arrow_result``.

        An engine error is raised as ``EngineError`` (a fixed message, no value); DuckDB's
        own text is logged with ``request_id``.

        With ``version`` (the sha256 of the data the SQL reads) the exact result is kept:
        the same question over the same data is answered again without the engine. It is
        the unprotected aggregate, so it never leaves this process. Its suppressed form
        may be kept beside it (``derive``); noise, the grant check, the spend, the audit
        entry and the receipt still run on every release.
        """
        if version:
            hit = self._results.get((sql, version))
            if hit is not None:
                return hit.table
        loads = self._loads
        bound = self.result_bytes if max_bytes == 0 else max_bytes
        result = self._execute(sql, timeout, request_id, bound)
        if version:
            with self._results_lock:
                # Kept only if no dataset was (re)loaded meanwhile and the data of this
                # version is what is loaded: another thread may have reloaded the dataset
                # between the caller's ensure_loaded() and this run.
                if self._loads == loads and version in self._loaded.values():
                    self._results.put((sql, version), _Result(result), result.nbytes)
        return result

    def derive(
        self,
        sql: str,
        version: str,
        table: pa.Table,
        tag: Hashable,
        compute: Callable[[pa.Table], Any],
        nbytes: Callable[[Any], int],
    ) -> Any:
        """``compute(table)``, kept beside the cached result of (sql, version) when
        ``table`` is that very result, so it is computed once per result; its
        ``nbytes`` count against the cache. For pure functions of the table only
        (suppression, the sticky L2 noise; never DP noise, drawn afresh each time)."""
        key = (sql, version)
        slot = self._results.get(key) if version else None
        if slot is None or slot.table is not table:
            return compute(table)
        value = slot.derived.get(tag)
        if value is None:
            value = compute(table)
            with self._results_lock:
                if tag not in slot.derived:
                    slot.derived[tag] = value
                    self._results.grow(key, nbytes(value))
                value = slot.derived[tag]
        return value

    def _execute(
        self, sql: str, timeout: float | None, request_id: str, max_bytes: int | None
    ) -> pa.Table:
        if timeout is not None and timeout <= 0:
            raise DeadlineExceeded("no time left to run the query")
        cursor = self._db.cursor()
        token = None
        try:
            if timeout is not None:
                deadline = time.monotonic() + timeout
                token = self._watchdog.watch(deadline, cursor)
            result = arrow_result(cursor, sql, max_bytes)
            if timeout is not None and time.monotonic() > deadline + REINTERRUPT_SECONDS:
                raise DeadlineExceeded("the local engine ran out of time")
            return result
        except (self._duckdb.Error, OSError, pa.ArrowException) as exc:
            # Raised below, outside this block, so that DuckDB's exception is not even
            # the new one's __context__.
            failure = self._failed(exc, OWNER, request_id)
            if timeout is not None and time.monotonic() > deadline:  # however it surfaced
                failure = DeadlineExceeded("the local engine ran out of time")
        finally:
            if token is not None:
                self._watchdog.release(token)
            cursor.close()
        raise failure

    def _failed(self, exc: Exception, who: str, request_id: str) -> Exception:
        """The typed error for an engine exception; DuckDB's text goes to the log only."""
        if isinstance(exc, self._duckdb.InterruptException):  # the watchdog's doing
            return DeadlineExceeded("the local engine ran out of time")
        if isinstance(exc, self._duckdb.OutOfMemoryException):
            failure: Exception = ResourceExhausted("the local engine ran out of memory")
        else:
            failure = EngineError(classify(exc), who=who)
        log.warning(
            "engine error request=%s step=%s type=%s engine_text=%s",
            request_id or "-",
            "merge" if who == HOME else "scan",
            type(exc).__name__,
            loggable(str(exc)),
        )
        return failure

    @property
    def _scratch(self) -> Any:
        """A second database with no datasets in it, for merging what peers sent."""
        if self._scratch_conn is None:
            self._db  # noqa: B018 - imports duckdb
            with self._lock:
                if self._scratch_conn is None:
                    # peers' partials are in memory already, bounded by the message size
                    config = {**_CONFIG, "temp_directory": "", "threads": 1}
                    if "memory_limit" in self._settings:  # the node's limit, not DuckDB's 80 %
                        config["memory_limit"] = self._settings["memory_limit"]
                    conn = self._duckdb.connect(":memory:", config=config)
                    _configure(conn)
                    self._scratch_conn = conn
        return self._scratch_conn

    def run_on_table(
        self, sql: str, name: str, table: pa.Table, *, request_id: str = ""
    ) -> pa.Table:
        """Run a generated merge query over one table registered for it alone, in a
        database that holds none of the node's datasets. Errors as ``run``'s."""
        cursor = self._scratch.cursor()
        try:
            cursor.register(name, table)
            return arrow_result(cursor, sql, None)  # no more rows than the partials it merges
        except (self._duckdb.Error, OSError, pa.ArrowException) as exc:
            failure = self._failed(exc, HOME, request_id)
        finally:
            cursor.close()
        if isinstance(failure, EngineError):
            failure = failure.placed(
                " in the step after the merge (HAVING, ORDER BY or an expression of SELECT)"
            )
        raise failure

    def close(self) -> None:
        self._watchdog.stop()
        for conn in (self._conn, self._scratch_conn):
            if conn is not None:
                conn.close()
