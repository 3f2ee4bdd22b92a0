"""Calls a home node answers for another member: access requests and disclosure reports.

The home vouches for its user (the requester travels in the request, filled in from the
user's certificate here, never from the client), and the owner re-checks that this home
may vouch for users of that organisation (``Vouching.requester_for``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from federation.envelope import Requester
from federation.membership import Member, Membership
from gateway import serde
from gateway.access import AccessRequest, AccessRequests
from gateway.audit import AuditLog
from gateway.clock import utc
from gateway.disclosure import DisclosureReport
from gateway.errors import FailedPrecondition, NotFound
from gateway.limits import cut
from gateway.transport import Transport


class Forwarding:
    def __init__(
        self,
        node_id: str,
        membership: Callable[[], Membership],
        transport: Transport,
        access: AccessRequests,
        audit: AuditLog,
        disclosure: Callable[[str, str], DisclosureReport],
    ) -> None:
        self.node_id = node_id
        self._membership = membership
        self._transport = transport
        self._access = access
        self._audit = audit
        self._disclosure = disclosure

    def member(self, node_id: str) -> Member:
        member = self._membership().get(node_id)
        if member is None:
            raise NotFound(f"no member {node_id!r} in the federation")
        return member

    def submit_access(self, req: AccessRequest, caller: Requester) -> AccessRequest:
        owner = self.member(req.owner)
        forwarded = replace(req, requester=caller, home_node=self.node_id)  # what we vouch for
        if owner.id == self.node_id:
            result = self._access.submit(forwarded, caller, self.node_id)
        else:
            answer = self._transport.call(
                owner, "ForwardAccessRequest", serde.access_request_to_proto(forwarded)
            )
            result = serde.access_request_from_proto(answer)
        self._audit.append(
            {
                "kind": "access.forwarded",
                "time": utc(),
                "request_id": result.id,
                "requester": str(caller),
                "owner": owner.id,
                "dataset": req.dataset,
            }
        )
        return result

    def access_status(self, owner_id: str, request_id: str, caller: Requester) -> AccessRequest:
        owner = self.member(owner_id)
        if owner.id == self.node_id:
            return self._access.status_for(request_id, caller)
        forwarded = serde.forwarded_status_request(owner.id, request_id, caller)
        answer = self._transport.call(owner, "ForwardAccessRequestStatus", forwarded)
        return serde.access_request_from_proto(answer)

    def disclosure(self, node_id: str, since: str, until: str) -> DisclosureReport:
        """``node_id`` empty: this node's own report."""
        target = self.member(node_id or self.node_id)
        if target.id == self.node_id:
            return self._disclosure(since, until)
        asked = serde.disclosure_request(target.id, since, until)
        report = serde.disclosure_report_from_proto(
            self._transport.call(target, "PeerDisclosure", asked)
        )
        if report.node != target.id:  # a member reports for itself only (as its catalog)
            raise FailedPrecondition(f"member {target.id!r} answered as {cut(report.node)!r}")
        return report
