"""A dataset's file is checked, hashed and read through one descriptor (review,
2026-12-05): opened by name at each step, a file replaced between the check and the hash
was pinned unchecked and served, a folder on its path swapped for a symlink led the
registration and the engine outside the dataset roots, and a FIFO in the file's place
held the engine's lock for ever. Each case is the swap made at the very step a race would
hit it."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gateway import engine as engine_mod
from gateway import quality
from gateway.catalog import CatalogEntry
from gateway.descriptor import ColumnSpec, DatasetDescriptor
from gateway.engine import Engine
from gateway.errors import FailedPrecondition, InvalidArgument, Unavailable


def _desc(path: Path, fmt: str = "parquet") -> DatasetDescriptor:
    return DatasetDescriptor(
        "w", "W", "", "Dept", "L2", "daily", str(path), fmt, (ColumnSpec("wage", "int32"),)
    )


def _write(path: Path, values: list[int]) -> None:
    pq.write_table(pa.table({"wage": pa.array(values, pa.int32())}), path)


def _registered(path: Path, values: list[int]) -> CatalogEntry:
    """``path`` written with ``values`` and checked as a registration would."""
    _write(path, values)
    return CatalogEntry(_desc(path), quality.check_file(_desc(path), path), "", "")


def test_a_file_replaced_after_its_check_is_not_pinned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "w.parquet"
    _write(path, [10, 20, 30])
    real = quality._measure

    def then_replaced(desc, f, p):  # noqa: ANN001, ANN202 - the swap, right after the check
        report = real(desc, f, p)
        other = tmp_path / "other.parquet"
        pq.write_table(pa.table({"wage": ["1000000"] * 5, "ssn": ["x"] * 5}), other)
        os.replace(other, path)
        return report

    monkeypatch.setattr(quality, "_measure", then_replaced)
    # the checked file, unlinked by the replace, is seen to change: nothing is pinned (the
    # new file's hash was pinned with the old file's report, and the new file served)
    with pytest.raises(InvalidArgument, match="changed while it was checked"):
        quality.check_file(_desc(path), path)
    monkeypatch.undo()
    with pytest.raises(InvalidArgument, match="schema mismatch"):  # judged for itself
        quality.check_file(_desc(path), path)


def test_a_file_rewritten_in_place_during_its_check_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "w.parquet"
    _write(path, [10, 20, 30])
    real = quality._measure

    def then_rewritten(desc, f, p):  # noqa: ANN001, ANN202
        report = real(desc, f, p)
        with open(path, "ab") as fh:  # the same inode, other bytes
            fh.write(b"\0")
        return report

    monkeypatch.setattr(quality, "_measure", then_rewritten)
    with pytest.raises(InvalidArgument, match="changed while it was checked"):
        quality.check_file(_desc(path), path)


def test_a_folder_swapped_for_a_symlink_leads_nowhere_outside(tmp_path: Path) -> None:
    data, outside = tmp_path / "data", tmp_path / "outside"
    (data / "hr").mkdir(parents=True)
    outside.mkdir()
    path = data / "hr" / "w.parquet"
    _write(path, [10, 20, 30])
    _write(outside / "w.parquet", [7, 8, 9, 10])
    entry = CatalogEntry(_desc(path), quality.check_file(_desc(path), path), "", "")
    (data / "hr").rename(data / "hr.old")
    (data / "hr").symlink_to(outside)  # the path now leads outside the data root
    with pytest.raises(InvalidArgument, match="not where its path led"):
        quality.check_file(_desc(path), path)
    engine = Engine(1)
    try:
        with pytest.raises(FailedPrecondition, match="no longer leads to the file registered"):
            engine.ensure_loaded(entry)
    finally:
        engine.close()


def test_a_fifo_in_the_files_place_is_refused_without_blocking(tmp_path: Path) -> None:
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    _write(a, [1, 2, 3])
    _write(b, [4, 5, 6])
    entry_a = CatalogEntry(_desc(a), quality.check_file(_desc(a), a), "", "")
    entry_b = CatalogEntry(_desc(b), quality.check_file(_desc(b), b), "", "")
    a.unlink()
    os.mkfifo(a)
    engine = Engine(1)
    done: list[str] = []

    def load_both() -> None:
        with pytest.raises(FailedPrecondition, match="not a regular file"):
            engine.ensure_loaded(entry_a)
        done.append(engine.ensure_loaded(entry_b))

    try:
        worker = threading.Thread(target=load_both, daemon=True)
        worker.start()
        worker.join(20)
        if worker.is_alive():  # unblock it: open the FIFO for writing
            fd = os.open(a, os.O_WRONLY | os.O_NONBLOCK)
            os.close(fd)
            worker.join(5)
            pytest.fail("a FIFO in a dataset's place blocked the engine")
        assert done == ["ds_w"]
        with pytest.raises(InvalidArgument, match="not a regular file"):
            quality.check_file(_desc(a), a)
    finally:
        engine.close()


def test_a_csv_of_one_endless_line_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "dump.csv"
    path.write_text("x" * (quality.MAX_HEADER_BYTES + 10))
    with pytest.raises(InvalidArgument, match="header line is longer than"):
        quality.check_file(_desc(path, "csv"), path)
    path.write_text('"wage\n')  # a quote left open: the csv module's own error, named
    with pytest.raises(InvalidArgument):
        quality.check_file(_desc(path, "csv"), path)


def test_a_path_put_back_is_taken_at_once(tmp_path: Path) -> None:
    """Diff review (2026-12-05): the refusal of a path that led elsewhere was kept by
    the file's own stamp, which a folder's rename does not move: the path put back was
    refused until a restart."""
    data = tmp_path / "data"
    (data / "hr").mkdir(parents=True)
    path = data / "hr" / "w.parquet"
    entry = _registered(path, [10, 20, 30])
    engine = Engine(1)
    try:
        (data / "hr").rename(data / "hr2")
        (data / "hr").symlink_to(data / "hr2")  # the same file, reached another way
        with pytest.raises(FailedPrecondition, match="no longer leads"):
            engine.ensure_loaded(entry)
        (data / "hr").unlink()
        (data / "hr2").rename(data / "hr")
        assert engine.ensure_loaded(entry) == "ds_w"
    finally:
        engine.close()


def test_an_io_error_and_a_chmod_while_loading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Diff review (2026-12-05): an I/O error while hashing was INTERNAL (it was
    FAILED_PRECONDITION "cannot be read" before); a chmod during a load fails that load
    only (its change time moved, as a rewrite's with its time put back would), and the
    next load reads the file again."""
    import errno

    from gateway import dataset_file

    path = tmp_path / "w.parquet"
    entry = _registered(path, [10, 20, 30])
    engine = Engine(1)
    try:

        def eio(fd: int, n: int, at: int) -> bytes:
            raise OSError(errno.EIO, "Input/output error")

        monkeypatch.setattr(dataset_file.os, "pread", eio)
        with pytest.raises(FailedPrecondition, match="cannot be read"):
            engine.ensure_loaded(entry)
        monkeypatch.undo()
        real = engine_mod.read_dataset

        def read_then_chmod(e: CatalogEntry, source: str) -> pa.Table:
            table = real(e, source)
            path.chmod(0o640)
            return table

        monkeypatch.setattr(engine_mod, "read_dataset", read_then_chmod)
        # its change time moved: refused this once (a write with its modification time
        # put back moves it too), and read again at the next load
        with pytest.raises(Unavailable, match="changed while it was read"):
            engine.ensure_loaded(entry)
        monkeypatch.undo()
        assert engine.ensure_loaded(entry) == "ds_w"
    finally:
        engine.close()


def test_a_read_error_is_not_kept_and_a_rewrite_with_its_time_put_back_is_seen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Diff review (2026-12-05): an I/O error of the read was kept as a refusal by the
    file's stamp (the healthy file was refused until a restart), and a file rewritten
    during a load with its size and modification time put back was served."""
    path = tmp_path / "w.parquet"
    entry = _registered(path, [10, 20, 30])
    engine = Engine(1)
    real = engine_mod.read_dataset
    try:

        def fails_once(e: CatalogEntry, source: str) -> pa.Table:
            monkeypatch.setattr(engine_mod, "read_dataset", real)
            raise pa.ArrowIOError("a passing I/O error")

        monkeypatch.setattr(engine_mod, "read_dataset", fails_once)
        with pytest.raises(FailedPrecondition, match="cannot be read"):
            engine.ensure_loaded(entry)
        assert engine.ensure_loaded(entry) == "ds_w"  # read again, not refused from memory

        engine2 = Engine(1)
        good = path.read_bytes()
        st = path.stat()

        def rewritten(e: CatalogEntry, source: str) -> pa.Table:
            _write(tmp_path / "bad.parquet", [99, 20, 30])
            bad = (tmp_path / "bad.parquet").read_bytes()
            assert len(bad) == len(good)
            with open(path, "r+b") as fh:  # in place: the same inode, the same size
                fh.write(bad)
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # its time put back
            return real(e, source)

        monkeypatch.setattr(engine_mod, "read_dataset", rewritten)
        try:
            with pytest.raises(Unavailable, match="changed while it was read"):
                engine2.ensure_loaded(entry)
        finally:
            engine2.close()
    finally:
        engine.close()
