"""What an Arrow IPC stream from a peer may hold before it is decoded.

A partial's buffers could be zstd- or lz4-compressed: 12 KB that decode to 344 MB (a
review's bomb, 2026-12-04). Our own writer never compresses, so a stream with a compressed
record batch (or dictionary batch) is refused from the message metadata alone, before a
byte is decompressed. The metadata is a flatbuffer (Arrow's ``Message.fbs``); only the
few fields needed are read, each read bounds-checked.
"""

from __future__ import annotations

import struct

import pyarrow as pa

# Message.fbs: the MessageHeader union's members that carry a RecordBatch
_RECORD_BATCH, _DICTIONARY_BATCH = 3, 2


class IpcRefused(ValueError):
    """A stream this node does not decode."""


def check_stream(buf: pa.Buffer) -> None:
    """Refuse ``buf`` if any of its messages is compressed or its metadata is malformed."""
    try:
        _check_messages(pa.ipc.MessageReader.open_stream(buf))
    except (pa.ArrowException, OSError):  # not an Arrow stream at all
        raise IpcRefused("not an Arrow IPC stream") from None


def _check_messages(reader: pa.ipc.MessageReader) -> None:
    while True:
        try:
            message = reader.read_next_message()
        except StopIteration:
            return
        if message is None:
            return
        meta = message.metadata.to_pybytes()
        try:
            compressed = _compressed(meta)
        except (struct.error, IndexError):
            raise IpcRefused("an Arrow message whose metadata cannot be read") from None
        if compressed:
            raise IpcRefused("a compressed Arrow record batch: nodes send them uncompressed")


def _compressed(meta: bytes) -> bool:
    message = _ref(meta, 0)
    kind = _field(meta, message, 1)
    if not kind:
        return False
    header_type = meta[kind]
    header = _field(meta, message, 2)
    if header_type not in (_RECORD_BATCH, _DICTIONARY_BATCH) or not header:
        return False
    batch = _ref(meta, header)
    if header_type == _DICTIONARY_BATCH:  # DictionaryBatch.data: its RecordBatch
        data = _field(meta, batch, 1)
        if not data:
            return False
        batch = _ref(meta, data)
    return bool(_field(meta, batch, 3))  # RecordBatch.compression


def _ref(buf: bytes, at: int) -> int:
    """Where the uoffset at ``at`` points."""
    target = at + struct.unpack_from("<I", buf, at)[0]
    if not 0 <= target < len(buf):
        raise IndexError(target)
    return target


def _field(buf: bytes, table: int, index: int) -> int:
    """The position of field ``index`` of the table at ``table`` (0: absent)."""
    vtable = table - struct.unpack_from("<i", buf, table)[0]
    size = struct.unpack_from("<H", buf, vtable)[0]
    if 4 + 2 * index >= size:
        return 0
    offset = struct.unpack_from("<H", buf, vtable + 4 + 2 * index)[0]
    if offset and not 0 <= table + offset < len(buf):
        raise IndexError(offset)
    return table + offset if offset else 0
