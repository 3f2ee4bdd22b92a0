"""Calls a home node answers for another member: access requests and disclosure reports.

The home vouches for its user (the requester travels in the request, filled in from the
user's certificate here, never from the client), and the owner re-checks that this home
may vouch for users of that organisation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from federation.envelope import Requester
from federation.membership import Member, Membership
from gateway import serde
from gateway.access import AccessRequests
from gateway.audit import AuditLog
from gateway.clock import utc
from gateway.errors import NotFound, PermissionDenied
from gateway.transport import Transport

USER_ROLES = ("analyst", "operator")


class Forwarding:
    def __init__(
        self,
        node_id: str,
        membership: Callable[[], Membership],
        transport: Transport,
        access: AccessRequests,
        audit: AuditLog,
        disclosure: Callable[[Any], Any],
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

    def vouched_requester(self, home_node: str, requester: Requester) -> Requester:
        """At the owner: a home node may only vouch for users of its own organisation."""
        home = self.member(home_node)
        if requester.org != home.org or requester.role not in USER_ROLES:
            raise PermissionDenied(f"home node {home.id} may only vouch for users of {home.org!r}")
        return requester

    def submit_access(self, req: Any, caller: Requester) -> Any:
        owner = self.member(req.owner)
        forwarded = serde.forwarded_access_request(req, caller, self.node_id)
        if owner.id == self.node_id:
            result = self._access.submit(forwarded, caller, self.node_id)
        else:
            result = self._transport.call(owner, "ForwardAccessRequest", forwarded)
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

    def access_status(self, owner_id: str, request_id: str, caller: Requester) -> Any:
        owner = self.member(owner_id)
        if owner.id == self.node_id:
            return self._access.status_for(request_id, caller)
        forwarded = serde.access_status_request(owner.id, request_id, caller)
        return self._transport.call(owner, "ForwardAccessRequestStatus", forwarded)

    def disclosure(self, req: Any) -> Any:
        target = self.member(req.node or self.node_id)
        if target.id == self.node_id:
            return self._disclosure(req)
        return self._transport.call(target, "PeerDisclosure", req)
