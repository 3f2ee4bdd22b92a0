"""The gateway's Grid (``gateway.training.grid``) over in-process ClientApps, for tests.

Every message crosses as Flower's serialised bytes, exactly as over ``Peer/TrainStep``;
here the exchange hands it to the destination node's ClientApp with that node's
``Context`` (kept across messages, as an owner keeps it for a run), and the reply
crosses back the same way. A node can be taken down (it no longer answers nor is listed) or made to
fail (it answers with an error message, as Flower does for a ClientApp exception).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager

from flwr.app import Context, Error, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.constant import SUPERLINK_NODE_ID, ErrorCode
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity

from gateway.training.grid import ExchangeGrid, from_bytes, to_bytes

RUN_ID = 7


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


class LocalGrid(ExchangeGrid):
    """The gateway's Grid with an in-process exchange: one ClientApp per node id."""

    def __init__(self, apps: Mapping[int, ClientApp], run_id: int = RUN_ID) -> None:
        self._apps = dict(apps)
        self._contexts = {
            node: Context(
                run_id=run_id, node_id=node, node_config={}, state=RecordDict(), run_config={}
            )
            for node in self._apps
        }
        self.down: set[int] = set()  # nodes that neither answer nor are listed
        self.failing: set[int] = set()  # nodes that answer with an error
        self.sent: list[tuple[int, str]] = []  # (node, message type) of every delivery
        super().__init__(Run.create_empty(run_id), list(self._apps), self._deliver_here)

    def get_node_ids(self) -> Iterable[int]:
        return [n for n in self._apps if n not in self.down]

    def _deliver_here(
        self, out: Sequence[tuple[int, bytes]], timeout: float | None
    ) -> list[tuple[int, bytes]]:
        """What the home's transport and each owner's TrainStep do, without the network."""
        replies = []
        for node, data in out:
            if node in self.down or node not in self._apps:
                continue
            received = from_bytes(data)
            self.sent.append((node, received.metadata.message_type))
            if node in self.failing:
                reply = Message(
                    Error(ErrorCode.CLIENT_APP_RAISED_EXCEPTION, "down"), reply_to=received
                )
            else:
                reply = self._apps[node](received, self._contexts[node])
            replies.append((node, to_bytes(reply)))
        return replies
