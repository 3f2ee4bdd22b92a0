"""A home node vouches for its own users; every owner checks that it may.

The home signs the envelope's vouched fields with its node key. An owner accepts a
request from the home itself, or from its own parent relaying it, and then only with the
home's signature intact: a relay can neither change nor invent what the home vouched for.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import replace

from cryptography import x509

from federation.envelope import CLOCK_SKEW_SECONDS, MAX_AGE_SECONDS, Envelope, Requester
from federation.membership import Member, Membership
from gateway import receipts
from gateway.clock import now, parse_time, utc
from gateway.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from gateway.receipts import Signer
from gateway.text import check_purpose

USER_ROLES = ("analyst", "operator")


class Vouching:
    def __init__(
        self,
        node_id: str,
        membership: Callable[[], Membership],
        signer: Signer,
        ca_bundle: list[x509.Certificate],
        in_force: receipts.InForce | None = None,
    ) -> None:
        self.node_id = node_id
        self._membership = membership
        self._signer = signer
        self._ca_bundle = ca_bundle
        self._in_force = in_force  # a member's signature counts only while its cert is

    def check_own_user(self, caller: Requester) -> None:
        """At a home: it vouches only for users of its own organisation, and only while
        it is a member (a document that dropped it, taken at runtime, leaves it none)."""
        home = self._membership().get(self.node_id)
        if home is None:
            raise PermissionDenied(
                f"{self.node_id} is not in the federation membership: it vouches for no one"
            )
        if caller.org != home.org:
            raise PermissionDenied(
                f"{self.node_id} is not the home node of {caller.org!r}: connect to your own"
            )

    def sign(self, env: Envelope) -> Envelope:
        """The home signs what it vouches for, and when, before the request leaves it."""
        env = replace(env, issued_at=utc())
        signed = self._signer.sign(env.vouched())
        return env.signed(signed.signature, signed.cert_pem)

    def state(self, body: dict) -> str:
        """A statement this node signs (with its node key) for other members to check."""
        return self._signer.sign({**body, "owner": self.node_id}).to_json()

    def member_statement(self, text: str) -> tuple[str, dict]:
        """The member node that signed ``text`` (a statement from ``state``), and what
        it says; refused when it is not a current member's, intact."""
        receipt = receipts.Receipt.from_json(text)
        try:
            node = receipts.verify_statement(receipt, self._ca_bundle, self._in_force)
        except InvalidArgument as exc:
            raise PermissionDenied(f"a statement not signed by a member: {exc.message}") from None
        if self._membership().get(node) is None:
            raise PermissionDenied(f"a statement signed by {node!r}, not a member")
        return node, dict(receipt.body)

    def requester_for(self, home_node: str, requester: Requester) -> Requester:
        """At an owner, for a call forwarded by ``home_node``: it may only vouch for users
        of its own organisation."""
        home = self._membership().get(home_node)
        if home is None:
            raise NotFound(f"no member {home_node!r} in the federation")
        if requester.org != home.org or requester.role not in USER_ROLES:
            raise PermissionDenied(f"home node {home.id} may only vouch for users of {home.org!r}")
        return requester

    def check(self, caller_node: str, env: Envelope) -> Requester:
        """The requester of a request that ``caller_node`` sent us, if it may vouch."""
        members = self._membership()
        home = members.get(env.home_node)
        me = members.get(self.node_id)
        if home is None:
            raise PermissionDenied(f"home node {env.home_node!r} is not a member")
        if caller_node != env.home_node and (me is None or me.parent != caller_node):
            raise PermissionDenied(
                f"node {caller_node!r} may not forward a request of home node {env.home_node!r}"
            )
        r = _vouched_requester(env, home, "query")
        check_fresh(env)
        if self.node_id in env.path:
            raise InvalidArgument(f"request loop through {self.node_id}")
        if caller_node != env.home_node:  # relayed: the home's own signature must vouch
            self._signed_by_home(env, "relayed request")
        return r

    def check_partner(self, caller_node: str, env: Envelope, matcher: str) -> Requester:
        """At the other owner of a PSI session: ``caller_node`` is the matching owner the
        home named in what it signed (``matcher``), and the home's signature is intact
        (the matcher can neither change nor invent the session)."""
        if caller_node != matcher:
            raise PermissionDenied(
                f"node {caller_node!r} is not the matching owner of this session ({matcher!r})"
            )
        home = self._membership().get(env.home_node)
        if home is None:
            raise PermissionDenied(f"home node {env.home_node!r} is not a member")
        r = _vouched_requester(env, home, "run PSI")
        check_fresh(env)
        self._signed_by_home(env, "session")
        return r

    def _signed_by_home(self, env: Envelope, what: str) -> None:
        try:
            receipts.verify_signed(
                env.vouched(),
                env.signature,
                env.home_cert,
                self._ca_bundle,
                env.home_node,
                self._in_force,
            )
        except InvalidArgument as exc:
            raise PermissionDenied(
                f"{what} not vouched for by home node {env.home_node}: {exc.message}"
            ) from None


def check_fresh(env: Envelope, at: dt.datetime | None = None) -> None:
    """Refuse an envelope its home signed more than ``MAX_AGE_SECONDS`` ago (or further
    in this node's future than clocks drift apart): a replay of an old one would otherwise
    need every released request remembered for ever (review, 2026-12-04)."""
    if not env.issued_at:
        raise PermissionDenied("the request carries no time its home node signed it at")
    stamp = parse_time(env.issued_at, "the request's signing time")  # any year, any zone
    signed = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    age = ((at or now()) - signed).total_seconds()
    if age > MAX_AGE_SECONDS:
        raise FailedPrecondition(
            f"request {env.request_id} was signed by {env.home_node} at {stamp}, more "
            f"than {MAX_AGE_SECONDS // 60} minutes ago: a stale or replayed request is refused"
        )
    if age < -CLOCK_SKEW_SECONDS:
        raise FailedPrecondition(
            f"request {env.request_id} was signed by {env.home_node} at {stamp}, in this "
            "node's future: are the two nodes' clocks set right?"
        )


def _vouched_requester(env: Envelope, home: Member, verb: str) -> Requester:
    """The envelope's requester, if ``home`` may vouch for it at all."""
    r = env.requester
    if r.role not in USER_ROLES:
        raise PermissionDenied(f"requester role {r.role!r} may not {verb}")
    if r.org != home.org:
        raise PermissionDenied(
            f"home node {home.id} may only vouch for users of {home.org!r}, not {r.org!r}"
        )
    check_purpose(env.purpose)
    return r
