"""Flower's ``Grid`` over a callable: how a run's ServerApp reaches the owners.

The strategy runs in its own worker process (``gateway.training.worker``): Flower keeps
the run's identity in process-global state, so two runs may not share a process. The
worker holds no key and opens no port; each ``send_and_receive`` hands the serialised
Messages (Flower's own serde) to ``exchange``, which the home node answers by carrying
them over mTLS to the owners (``Peer/TrainStep``) and returns their replies.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from uuid import uuid4

from flwr.app import Message, RecordDict
from flwr.common.serde import (
    error_to_proto,
    message_from_proto,
    message_to_proto,
    metadata_to_proto,
    recorddict_to_proto,
)
from flwr.proto.message_pb2 import Message as ProtoMessage
from flwr.serverapp import Grid
from flwr.supercore.run import Run

# (destination node id, serialised Message) out; (node id, serialised reply) back, for
# the nodes that answered in time, any order.
Exchange = Callable[[Sequence[tuple[int, bytes]], float | None], Sequence[tuple[int, bytes]]]


def to_bytes(message: Message) -> bytes:
    return bytes(message_to_proto(message).SerializeToString())


_CONTENT_TAG = b"\x12"  # field 2 of Flower's proto Message, length-delimited


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def to_bytes_each(messages: Sequence[Message]) -> list[bytes]:
    """``to_bytes`` of each message, the byte-identical result with the content that
    several messages share serialised once: a strategy hands every node the same
    RecordDict, and Flower's serde takes ~0.8 s of CPU for a 50 MB one. A message is
    its metadata (field 1), content (2) and error (3), written in that order, so its
    bytes are its proto without the content with the content's field put in between."""
    contents: dict[int, tuple[bytes, bytes]] = {}  # id of a RecordDict: (field head, body)
    out = []
    for m in messages:
        if not m.has_content():
            out.append(to_bytes(m))
            continue
        key = id(m.content)  # each content stays alive in ``messages`` while we loop
        if key not in contents:
            body = recorddict_to_proto(m.content).SerializeToString()
            contents[key] = (_CONTENT_TAG + _varint(len(body)), body)
        head = ProtoMessage(metadata=metadata_to_proto(m.metadata)).SerializeToString()
        tail = (
            ProtoMessage(error=error_to_proto(m.error)).SerializeToString()
            if m.has_error()
            else b""
        )
        out.append(b"".join((head, *contents[key], tail)))
    return out


def from_bytes(data: bytes) -> Message:
    proto = ProtoMessage()
    proto.ParseFromString(data)
    return message_from_proto(proto)


class ExchangeGrid(Grid):
    def __init__(self, run: Run, node_ids: Sequence[int], exchange: Exchange) -> None:
        self._run = run
        self._node_ids = list(node_ids)
        self._exchange = exchange
        self._pending: dict[str, Message] = {}

    def set_run(self, run: Run) -> None:
        self._run = run

    @property
    def run(self) -> Run:
        return self._run

    def create_message(
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> Message:
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        return list(self._node_ids)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        ids = []
        for msg in messages:
            msg.metadata.__dict__["_message_id"] = uuid4().hex  # as Flower's own grids do
            self._pending[msg.metadata.message_id] = msg
            ids.append(msg.metadata.message_id)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        wanted = [self._pending.pop(i) for i in message_ids if i in self._pending]
        return self._deliver(wanted, None)

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        ids = list(self.push_messages(messages))
        return self._deliver([self._pending.pop(i) for i in ids], timeout)

    def _deliver(self, messages: list[Message], timeout: float | None) -> list[Message]:
        sent = {m.metadata.dst_node_id: m for m in messages}
        out = list(zip(sent, to_bytes_each(list(sent.values())), strict=True))
        replies = []
        for node, data in self._exchange(out, timeout):
            asked = sent.get(node)
            if asked is None:
                continue
            try:
                reply = from_bytes(data)
            except Exception:  # an undecodable reply is a missing one
                continue
            # Who answered is who was called, whatever the reply says of itself.
            reply.metadata.__dict__["_src_node_id"] = node
            reply.metadata.__dict__["_reply_to_message_id"] = asked.metadata.message_id
            replies.append(reply)
        return replies
