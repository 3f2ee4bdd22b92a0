"""A relay asks its children (a province's cities) and gathers their partials.

It is the home node for its children: it forwards the home's signed envelope with
itself on the path, with the same deadline, and keeps every child's report.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Executor

from federation.envelope import Envelope
from federation.fanout import fan_out
from federation.gather import Gathered, gather
from federation.membership import Member, Membership
from federation.reports import PartialAnswer
from federation.sql import QueryPlan
from gateway.errors import error_of
from gateway.receipts import ReceiptCheck, query_asked


class Relay:
    def __init__(
        self,
        node_id: str,
        membership: Callable[[], Membership],
        ask: Callable[[Member, Envelope], PartialAnswer],
        executor: Executor,
        receipts: ReceiptCheck | None = None,
    ) -> None:
        self.node_id = node_id
        self._membership = membership
        self._ask = ask
        # A child's partial counts only with its receipt in force (the door checks only
        # callers): a revoked city is dropped here, not its whole province at the home.
        self._receipts = receipts
        # Its own pool: waiting on the pool that runs the relay's own task could starve.
        self._executor = executor

    def ask_children(self, env: Envelope, plan: QueryPlan) -> Gathered:
        children = self._membership().children(self.node_id)
        if not children:
            return Gathered()
        child_env = env.relayed_by(self.node_id)
        outcomes = fan_out(
            self._executor,
            children,
            lambda m: self._ask(m, child_env),
            timeout=max(0.0, env.deadline - time.monotonic()),
            to_error=error_of,
        )
        members = self._membership()
        check = self._receipts
        return gather(
            plan,
            outcomes,
            via=self.node_id,
            speaks_for=members.subtree,
            receipt_problem=(
                None
                if check is None
                else lambda node, text, payload: check.problem(
                    text,
                    node,
                    env.request_id,
                    covering=None if payload is None else (payload, "query"),
                    asked=query_asked(env, plan),
                )
            ),
            agree=False,  # the owner does it once, with the relay's own partial
        )
