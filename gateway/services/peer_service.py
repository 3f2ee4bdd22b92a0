"""The node-to-node ``Peer`` service (the edge admits member nodes only)."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from cryptography import x509

from gateway import serde
from gateway.edge import CallContext
from gateway.errors import PermissionDenied
from gateway.rpc.v1 import peer_pb2_grpc

if TYPE_CHECKING:
    from gateway.node import Node


class PeerService(peer_pb2_grpc.PeerServicer):
    def __init__(self, node: Node) -> None:
        self.node = node

    def PeerCatalog(self, request: Any, context: CallContext) -> Any:  # noqa: N802
        return self.node.catalog_response(context.caller, request.name_contains)

    def Execute(self, request: Any, context: CallContext) -> Any:  # noqa: N802
        env = serde.envelope_from_proto(request, self.node.deadline(context))
        self.node.vouching.check(context.caller.id, env)
        return serde.partial_answer_to_proto(self.node.owner.execute(env))

    def Witness(self, request: Any, context: CallContext) -> Any:  # noqa: N802
        pem = context.auth_context()["x509_pem_cert"][0]
        cert = x509.load_pem_x509_certificate(pem)
        req = serde.witness_request_from_proto(request)
        return serde.witnessed_head_to_proto(
            self.node.witness.countersign(context.caller.id, cert, req)
        )

    def ForwardAccessRequest(self, request: Any, context: CallContext) -> Any:  # noqa: N802
        ask = serde.access_request_from_proto(request)
        requester = self.node.vouching.requester_for(context.caller.id, ask.requester)
        return serde.access_request_to_proto(
            self.node.access.submit(ask, requester, context.caller.id)
        )

    def ForwardAccessRequestStatus(self, request: Any, context: CallContext) -> Any:  # noqa: N802
        requester = self.node.vouching.requester_for(
            context.caller.id, serde.requester_from_proto(request.requester)
        )
        found = self.node.access.status_for(request.request.id, requester)
        return serde.access_request_to_proto(found)

    def PeerDisclosure(self, request: Any, context: CallContext) -> Any:  # noqa: N802
        return serde.disclosure_report_to_proto(self.node.disclosure(request.since, request.until))

    def PsiRun(self, request: Any, context: CallContext) -> Any:  # noqa: N802
        env = serde.envelope_from_proto(request.envelope, self.node.stream_deadline(context), "psi")
        self.node.vouching.check(context.caller.id, env)
        stop = threading.Event()  # the home went away: the session stops at its next step
        context.add_callback(stop.set)
        return (serde.psi_event_to_proto(e) for e in self.node.psi.match(env, stop))

    def PsiExchange(self, request_iterator: Any, context: CallContext) -> Any:  # noqa: N802
        deadline = self.node.stream_deadline(context)
        frames = (serde.psi_frame_from_proto(m, deadline) for m in request_iterator)
        return (
            serde.psi_frame_to_proto(fr) for fr in self.node.psi.respond(context.caller.id, frames)
        )

    def TrainStep(self, request: Any, context: CallContext) -> Any:  # noqa: N802
        env = serde.envelope_from_proto(request.envelope, self.node.deadline(context), "train")
        if context.caller.id != env.home_node:  # the Flower message itself is not signed
            raise PermissionDenied("a training step comes from the run's home node itself")
        self.node.vouching.check(context.caller.id, env)
        answer = self.node.train_owner.receive(context.caller.id, env, serde.piece_of(request))
        return serde.train_step_response(answer)
