"""An in-process Flower Grid for the training tests: every message crosses as bytes.

It does what the gateway's Grid does over the network, without the network: each
message is serialised with Flower's serde (``message_to_proto(...).SerializeToString()``),
parsed back, handed to the destination node's ClientApp with that node's ``Context``
(kept across messages, as a SuperNode keeps it for a run), and the reply crosses back
the same way. A node can be taken down (it no longer answers nor is listed) or made to
fail (it answers with an error message, as Flower does for a ClientApp exception).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")  # read by flwr at import time
os.environ.setdefault("FLWR_DISABLE_UPDATE_CHECK", "1")

from flwr.app import Context, Error, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.constant import SUPERLINK_NODE_ID, ErrorCode
from flwr.common.serde import message_from_proto, message_to_proto
from flwr.proto.message_pb2 import Message as ProtoMessage
from flwr.serverapp import Grid
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity

RUN_ID = 7


def over_the_wire(message: Message) -> Message:
    """The message as the other side sees it: Flower's protobuf bytes, parsed."""
    data = message_to_proto(message).SerializeToString()
    return message_from_proto(ProtoMessage.FromString(data))


@contextmanager
def server_identity(run_id: int = RUN_ID) -> Iterator[None]:
    """Flower's process-global identity, which every new Message reads (the home's role)."""
    saved = (TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id)
    TaskIdentity.task_id = 1
    TaskIdentity.run_id = run_id
    TaskIdentity.node_id = SUPERLINK_NODE_ID
    try:
        yield
    finally:
        TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id = saved


class LocalGrid(Grid):
    """Flower's Grid over in-process ClientApps, one per node id."""

    def __init__(self, apps: Mapping[int, ClientApp], run_id: int = RUN_ID) -> None:
        self._apps = dict(apps)
        self._run = Run.create_empty(run_id)
        self._contexts = {
            node: Context(
                run_id=run_id, node_id=node, node_config={}, state=RecordDict(), run_config={}
            )
            for node in self._apps
        }
        self._replies: dict[str, bytes] = {}
        self._next_id = 0
        self.down: set[int] = set()  # nodes that neither answer nor are listed
        self.failing: set[int] = set()  # nodes that answer with an error
        self.sent: list[tuple[int, str]] = []  # (node, message type) of every delivery

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
        return [n for n in self._apps if n not in self.down]

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        ids = []
        for message in messages:
            self._next_id += 1
            message_id = f"m{self._next_id}"
            message.metadata.__dict__["_message_id"] = message_id
            ids.append(message_id)
            node = message.metadata.dst_node_id
            if node in self.down or node not in self._apps:
                continue
            received = over_the_wire(message)  # what the owner's transport hands on
            self.sent.append((node, received.metadata.message_type))
            if node in self.failing:
                reply = Message(
                    Error(ErrorCode.CLIENT_APP_RAISED_EXCEPTION, "down"), reply_to=received
                )
            else:
                reply = self._apps[node](received, self._contexts[node])
            reply.metadata.__dict__["_message_id"] = f"r{message_id}"
            self._replies[message_id] = message_to_proto(reply).SerializeToString()
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        out = []
        for message_id in message_ids:
            data = self._replies.pop(message_id, None)
            if data is not None:
                out.append(message_from_proto(ProtoMessage.FromString(data)))
        return out

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        return self.pull_messages(list(self.push_messages(messages)))
