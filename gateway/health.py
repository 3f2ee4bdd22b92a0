"""The node's gRPC health service: grpc_health's, plus the recording flip.

grpcio-health-checking 1.81 (the newest that accepts protobuf 6, which Flower needs) has
no ``Health/List``: gRPC answers it UNIMPLEMENTED, never reaching a servicer. A node that
cannot write its audit log or state reports every service NOT_SERVING until
a write succeeds again (``recording``), so peers' probes and operators' checks see it.

``Watch`` of a service the node does not serve is NOT_FOUND (``Check`` answers it so
itself, keeping nothing, and unaudited: it is the probe every peer and operator sends).
grpc_health would answer a ``Watch`` SERVICE_UNKNOWN and keep the name for good (a dict key per name
ever watched: 1,500 watches of random 64 KB names kept 91 MiB); refused before the base
class sees it, nothing is kept.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from grpc_health.v1 import health, health_pb2

from gateway.errors import NotFound

log = logging.getLogger("fedgate.node")

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class NodeHealth(health.HealthServicer):
    def __init__(self) -> None:
        super().__init__()
        self._statuses_lock = threading.Lock()
        self._statuses: dict[str, int] = {"": SERVING}  # what ``set`` was told last
        self._recording = True
        self._final = False  # graceful shutdown: statuses no longer change

    def set(self, service: str, status: int) -> None:
        """Set a service's status; while the node cannot record, SERVING is shown as
        NOT_SERVING (and restored when ``recording(True)`` comes)."""
        with self._statuses_lock:  # always taken before the base class's own lock
            if self._final:
                return
            self._statuses[service] = status
            super().set(service, self._shown(status))

    def Watch(self, request: Any, context: Any, send_response_callback: Any = None) -> Any:  # noqa: N802
        self._known(request.service)
        return super().Watch(request, context, send_response_callback)

    def _known(self, service: str) -> None:
        """Refuse a service ``set`` was never told of (the set of names only grows)."""
        with self._statuses_lock:
            known = service in self._statuses
        if not known:
            raise NotFound(f"this node serves no service {service[:100]!r}")

    def enter_graceful_shutdown(self) -> None:
        """Every service NOT_SERVING, for good (as the base class does)."""
        with self._statuses_lock:
            if self._final:
                return
            for service in self._statuses:
                self._statuses[service] = NOT_SERVING
                super().set(service, NOT_SERVING)
            self._final = True

    def recording(self, ok: bool) -> None:
        """The node's state took a write again (``ok``), or the storage refused one."""
        with self._statuses_lock:
            if ok == self._recording or self._final:
                return
            self._recording = ok
            for service, status in self._statuses.items():
                super().set(service, self._shown(status))
        if ok:
            log.warning("health: SERVING again (state writes succeed)")
        else:
            log.error("health: NOT_SERVING (cannot record; nothing is released)")

    def _shown(self, status: int) -> int:
        return NOT_SERVING if status == SERVING and not self._recording else status
