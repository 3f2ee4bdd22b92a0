"""The request envelope: who asks, through which home node, for what, until when.

A home node vouches for its own users: it authenticates the user from the client
certificate, fills the envelope, and signs the fields it vouches for. Every owner re-reads
the envelope, checks that signature where the request was relayed, and decides under its
own grants. The same envelope carries a query now and PSI and training next.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

MAX_PURPOSE_CHARS = 500  # a purpose is a sentence; it is signed, logged and audited
# How old a signed envelope an owner still takes: past the longest request (a training
# run or PSI session, 590 s) with room for clocks some minutes apart.
MAX_AGE_SECONDS = 3600
CLOCK_SKEW_SECONDS = 300  # an envelope signed this far in the owner's future is taken


@dataclass(frozen=True)
class Requester:
    role: str
    id: str
    org: str

    def __str__(self) -> str:
        return f"{self.role}:{self.id}"


@dataclass(frozen=True)
class Envelope:
    request_id: str
    requester: Requester
    home_node: str
    operation: str  # query | psi | train
    body: str  # what the operation runs (the SQL text of a query), re-checked by owners
    purpose: str = ""
    explain: bool = False  # a dry run: what would be released, nothing spent
    # The home's check before the release (gateway.roles.home): each owner decides and
    # answers as for a dry run, but a refusal is a real one. Nothing is computed or spent.
    check: bool = False
    include_children: bool = True  # a relay asks its children too
    path: tuple[str, ...] = ()  # nodes the request went through (loop guard)
    home_cert: str = ""  # PEM of the home node that signed
    signature: str = ""  # base64 ECDSA by the home node over ``vouched()``
    # When the home signed it (UTC, RFC 3339), signed with it: owners refuse an envelope
    # older than ``MAX_AGE_SECONDS`` and so need remember released requests only that long.
    issued_at: str = ""
    # Monotonic clock of the process holding the envelope; never travels (gRPC carries
    # the remaining time as the call's own deadline).
    deadline: float = field(default=0.0, compare=False)

    def vouched(self) -> dict:
        """The fields a home node vouches for, as it signs them."""
        r = self.requester
        fields = {
            "request_id": self.request_id,
            "sql": self.body,
            "home_node": self.home_node,
            "requester": {"role": r.role, "id": r.id, "org": r.org},
            "purpose": self.purpose,
            "explain": self.explain,
        }
        if self.operation != "query":
            fields["operation"] = self.operation
        if self.check:
            fields["check"] = True
        if self.issued_at:
            fields["issued_at"] = self.issued_at
        return fields

    def signed(self, signature: str, home_cert: str) -> Envelope:
        return replace(self, signature=signature, home_cert=home_cert)

    def relayed_by(self, node_id: str) -> Envelope:
        return replace(self, path=(*self.path, node_id))
