"""The client-facing ``Gateway`` service: what operators and analysts call at home."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from federation.envelope import Requester
from federation.sql.join import is_join
from gateway import serde
from gateway.access import PAGE_BYTES
from gateway.clock import utc
from gateway.edge import CallContext
from gateway.errors import InvalidArgument, PermissionDenied
from gateway.identity import Identity
from gateway.limits import RATED
from gateway.receipt_store import PAGE_BYTES as RECEIPTS_PAGE_BYTES
from gateway.roles.federated_catalog import clamp_timeout
from gateway.rpc.v1 import gateway_pb2_grpc

if TYPE_CHECKING:
    from gateway.node import Node

AUDIT_CHUNK_BYTES = 1 << 20


def requester(caller: Identity) -> Requester:
    return Requester(role=caller.role, id=caller.id, org=caller.org)


class GatewayService(gateway_pb2_grpc.GatewayServicer):
    def __init__(self, node: Node) -> None:
        self.node = node

    def _own_operator(self, caller: Identity) -> None:
        if caller.org != self.node.identity.org:
            raise PermissionDenied(
                f"operator {caller.id} of {caller.org!r} is not an operator of this node"
            )

    def WhoAmI(self, request: Any, context: CallContext) -> Any:  # noqa: N802
        return serde.whoami_response(self.node.identity, self.node.member, context.caller)

    def Catalog(self, request: Any, context: CallContext) -> Any:  # noqa: N802
        return self.node.catalog_response(context.caller, request.name_contains)

    def FederatedCatalog(self, request: Any, context: CallContext) -> Any:  # noqa: N802
        node = self.node
        timeout = clamp_timeout(
            request.timeout_seconds, node.config.peer_timeout_seconds, context.time_remaining
        )
        own = node.catalog_response(context.caller, request.name_contains)
        listings = node.federated_catalog.answer(request.name_contains, timeout, own.ByteSize())
        return serde.federated_catalog_response(node.identity, node.member, own, listings)

    def RegisterDataset(self, request: Any, context: CallContext) -> Any:  # noqa: N802
        self._own_operator(context.caller)
        entry, replaced = self.node.operator.register_dataset(
            serde.descriptor_from_proto(request.dataset), context.caller
        )
        return serde.register_response(entry, self.node.identity.id, replaced)

    def Query(self, request: Any, context: CallContext) -> Any:  # noqa: N802
        if is_join(request.sql):  # two owners' datasets: a join aggregate (docs/psi.md)
            if request.nodes:
                raise InvalidArgument("a join names its two nodes in FROM; leave out --nodes")
            with context.as_stream(RATED["Psi"]):  # a PSI session: Psi's rate and a slot
                stop = threading.Event()  # the analyst went away, or the edge ended it
                context.add_callback(stop.set)
                joined = self.node.psi_home.join(
                    request.sql,
                    requester(context.caller),
                    request.purpose,
                    request.explain,
                    self.node.stream_deadline(context),
                    stop,
                )
            return serde.query_answer_to_proto(joined)
        answer = self.node.home.query(
            serde.query_ask_from_proto(request),
            requester(context.caller),
            self.node.deadline(context),
        )
        return serde.query_answer_to_proto(answer)

    def Psi(self, request: Any, context: CallContext) -> Any:  # noqa: N802
        stop = threading.Event()  # the analyst went away
        context.add_callback(stop.set)
        events = self.node.psi_home.psi(
            serde.psi_ask_from_proto(request),
            requester(context.caller),
            self.node.stream_deadline(context),
            stop,
        )
        return (serde.psi_event_to_proto(e) for e in events)

    def Train(self, request: Any, context: CallContext) -> Any:  # noqa: N802
        stop = threading.Event()  # the analyst went away: the run stops at every node
        context.add_callback(stop.set)
        events = self.node.train_home.train(
            serde.train_ask_from_proto(request),
            requester(context.caller),
            self.node.stream_deadline(context),
            stop,
        )
        return (m for e in events for m in serde.train_events_to_proto(e))

    def TrainRuns(self, request: Any, context: CallContext) -> Any:  # noqa: N802
        runs = self.node.train_home.runs
        me = requester(context.caller)
        found = [runs.get(request.run_id, me)] if request.run_id else runs.mine(me)
        return serde.train_runs_response(found)

    def TrainCancel(self, request: Any, context: CallContext) -> Any:  # noqa: N802
        return serde.train_run_status(
            self.node.train_home.runs.cancel(request.run_id, requester(context.caller))
        )

    def AddGrant(self, request: Any, context: CallContext) -> Any:  # noqa: N802
        self._own_operator(context.caller)
        grant = self.node.operator.add_grant(serde.grant_from_proto(request.grant), context.caller)
        return serde.grant_to_proto(grant, grant.status(utc()))

    def ListGrants(self, request: Any, context: CallContext) -> Any:  # noqa: N802
        self._own_operator(context.caller)
        now = utc()
        return serde.grants_response(
            [(g, g.status(now)) for g in self.node.grants.list(request.dataset)]
        )

    def RevokeGrant(self, request: Any, context: CallContext) -> Any:  # noqa: N802
        self._own_operator(context.caller)
        grant = self.node.operator.revoke_grant(request.id, context.caller)
        return serde.grant_to_proto(grant, grant.status(utc()))

    def ApproveApp(self, request: Any, context: CallContext) -> Any:  # noqa: N802
        self._own_operator(context.caller)
        bundle = serde.app_bundle_from_proto(request)
        return serde.app_info_to_proto(
            self.node.operator.approve_app(bundle, request.name[:80], context.caller)
        )

    def ListApps(self, request: Any, context: CallContext) -> Any:  # noqa: N802
        self._own_operator(context.caller)
        return serde.list_apps_response(self.node.operator.list_apps())

    def RevokeApp(self, request: Any, context: CallContext) -> Any:  # noqa: N802
        self._own_operator(context.caller)
        return serde.app_info_to_proto(
            self.node.operator.revoke_app(request.digest, context.caller)
        )

    # --- audit and witnessing -------------------------------------------------------------

    def AuditExport(self, request: Any, context: CallContext) -> Iterator[Any]:  # noqa: N802
        node = self.node
        self._own_operator(context.caller)
        # its audit.exported entry and the head signed at it, in one transaction: the
        # export ends with them (what ``audit verify`` requires)
        lines = node.audit.export_lines(node.witness.receipts(), utc(), str(context.caller))
        chunk: list[str] = []
        size = 0
        for line in lines:
            chunk.append(line)
            size += len(line)
            if size >= AUDIT_CHUNK_BYTES:
                yield serde.audit_chunk("".join(chunk))
                chunk, size = [], 0
        if chunk:
            yield serde.audit_chunk("".join(chunk))

    def AuditShow(self, request: Any, context: CallContext) -> Any:  # noqa: N802
        self._own_operator(context.caller)
        if not request.request_id:  # would be every entry without one, in one reply
            raise InvalidArgument("name the request: audit show --request <id>")
        entries = self.node.audit.for_request(request.request_id)
        return serde.audit_show_response(
            [json.dumps({"seq": e.seq, "hash": e.hash, **e.data}, sort_keys=True) for e in entries]
        )

    def Receipts(self, request: Any, context: CallContext) -> Any:  # noqa: N802
        self._own_operator(context.caller)
        if request.after < 0:
            raise InvalidArgument("after must be 0 or the next of a previous reply")
        room = min(RECEIPTS_PAGE_BYTES, self.node.config.max_message_bytes // 2)  # the limit
        found, next_after = self.node.receipts.page(request.request_id, request.after, room)
        return serde.receipts_response(found, next_after)

    def WitnessNow(self, request: Any, context: CallContext) -> Any:  # noqa: N802
        self._own_operator(context.caller)
        round_ = self.node.witness_round(deadline=self.node.deadline(context))
        return serde.witness_now_response(round_)

    def WitnessedHeads(self, request: Any, context: CallContext) -> Any:  # noqa: N802
        self._own_operator(context.caller)
        heads = self.node.witness.heads_of(request.node, request.after_size, request.limit)
        return serde.witnessed_heads_response(heads)

    # --- access requests and disclosure -----------------------------------------------------

    def SubmitAccessRequest(self, request: Any, context: CallContext) -> Any:  # noqa: N802
        ask = serde.access_request_from_proto(request)
        return serde.access_request_to_proto(
            self.node.forwarding.submit_access(ask, requester(context.caller))
        )

    def AccessRequestStatus(self, request: Any, context: CallContext) -> Any:  # noqa: N802
        return serde.access_request_to_proto(
            self.node.forwarding.access_status(request.owner, request.id, requester(context.caller))
        )

    def ListAccessRequests(self, request: Any, context: CallContext) -> Any:  # noqa: N802
        self._own_operator(context.caller)
        if request.after < 0:
            raise InvalidArgument("after must be 0 or the next of a previous reply")
        room = min(PAGE_BYTES, self.node.config.max_message_bytes // 2)  # the reply's limit
        found, next_after = self.node.access.page(request.state, request.after, room)
        return serde.list_access_requests_response(found, next_after)

    def DecideAccessRequest(self, request: Any, context: CallContext) -> Any:  # noqa: N802
        self._own_operator(context.caller)
        decision = serde.access_decision_from_proto(request)
        return serde.access_request_to_proto(self.node.access.decide(decision, context.caller))

    def Disclosure(self, request: Any, context: CallContext) -> Any:  # noqa: N802
        report = self.node.forwarding.disclosure(request.node, request.since, request.until)
        return serde.disclosure_report_to_proto(report)
