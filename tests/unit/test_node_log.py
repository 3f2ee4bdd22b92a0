"""The node's stderr under a cap: gRPC's lines for refused handshakes cannot fill a disk."""

from __future__ import annotations

import os
from pathlib import Path

from gateway.node_log import cap_stderr

CAP = 1000


def _open(path: Path, flags: int) -> int:
    return os.open(path, os.O_WRONLY | os.O_CREAT | flags, 0o600)


def test_an_appended_file_is_kept_under_the_cap(tmp_path: Path) -> None:
    log = tmp_path / "stdout.log"
    fd = _open(log, os.O_APPEND)
    try:
        os.write(fd, b"handshake failed\n" * 50)  # 850 bytes: under the cap
        cap_stderr(CAP, fd)
        assert log.stat().st_size == 850 and not (tmp_path / "stdout.log.1").exists()
        os.write(fd, b"handshake failed\n" * 50)
        cap_stderr(CAP, fd)
        assert log.stat().st_size == 0
        assert (tmp_path / "stdout.log.1").read_bytes() == b"handshake failed\n" * 100
        os.write(fd, b"next\n")  # the process writes on, from the start of the file
        assert log.read_bytes() == b"next\n"
        for _ in range(20):  # a long run of refusals: each file stays under the cap plus
            os.write(fd, b"x" * 400)  # what is written between two rounds
            cap_stderr(CAP, fd)
            assert log.stat().st_size <= CAP
        assert (tmp_path / "stdout.log.1").read_bytes() == b"x" * 1200
    finally:
        os.close(fd)


def test_files_not_appended_pipes_and_small_files_are_left_alone(tmp_path: Path) -> None:
    plain = tmp_path / "plain.log"
    fd = _open(plain, 0)  # `2> file`: emptying it would leave a hole at the write offset
    reader, writer = os.pipe()
    try:
        os.write(fd, b"y" * 2000)
        cap_stderr(CAP, fd)
        assert plain.stat().st_size == 2000 and not (tmp_path / "plain.log.1").exists()
        os.write(writer, b"z" * 2000)
        cap_stderr(CAP, writer)  # a pipe: the reader (a journal) keeps its own limits
        assert os.read(reader, 4096) == b"z" * 2000
    finally:
        for each in (fd, reader, writer):
            os.close(each)
