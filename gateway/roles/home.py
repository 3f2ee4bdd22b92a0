"""The home node's side of a federated query: plan, fan out, merge, finish, keep receipts.

The home authenticates its user (the edge did, from the certificate), vouches for them in
a signed envelope, asks every owner through ``ask`` (its own owner in-process, the
others over the transport: the home cannot tell and does not care), merges the
still-protected partials and keeps every owner's receipt with its own audit entry.

Check first, release second: an owner spends privacy budget when it releases, so a query
that fails at one owner would cost the others budget for an answer nobody gets. Unless
the home has just seen that no owner spends on this dataset for this organisation
(``NoSpend``), it first sends a check round (each owner decides, computes nothing) and
releases only when every owner would answer (or the caller allowed a partial answer).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass

import pyarrow as pa

from federation.envelope import Envelope, Requester
from federation.fanout import fan_out
from federation.gather import Gathered, gather
from federation.membership import Member, Membership
from federation.outcome import Code, Error
from federation.partials import PartialError, RunSql, answer, to_ipc
from federation.reports import OwnerReport, PartialAnswer, QueryAnswer
from federation.sql import QueryPlan
from gateway.cache import BoundedCache, entry_cost
from gateway.clock import utc
from gateway.errors import (
    DeadlineExceeded,
    FedgateError,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unavailable,
    error_of,
)
from gateway.limits import check_size, cut
from gateway.planning import plan_or_refuse
from gateway.receipt_store import ReceiptStore
from gateway.receipts import query_asked
from gateway.roles.vouching import Vouching
from gateway.text import check_purpose

log = logging.getLogger("fedgate.home")

ANSWER_CACHE_BYTES = 16 * 1024 * 1024
ANSWER_CACHE_ENTRIES = 1024  # each costs its key and ~4 KiB besides (gateway/cache.py)


SpendKey = tuple[str, str, str, tuple[str, ...]]  # (dataset, node, requester, owners asked)


class NoSpend:
    """Datasets (asked by the same requester of the same owners) on which every owner
    said, in its last answer, that no grant it could use spends budget or uses
    (``OwnerReport.no_spend``), for ``ttl`` seconds: a question on them, new or not,
    skips the check round. Anything else is checked first. Bounded: at ``limit``
    entries it starts anew."""

    def __init__(self, ttl: float = 60.0, limit: int = 4096) -> None:
        self._ttl, self._limit = ttl, limit
        self._until: dict[SpendKey, float] = {}

    def known(self, key: SpendKey) -> bool:
        return self._until.get(key, 0.0) > time.monotonic()

    def learn(self, key: SpendKey, spends: bool) -> None:
        if spends:
            self._until.pop(key, None)
            return
        if len(self._until) >= self._limit:
            self._until.clear()
        self._until[key] = time.monotonic() + self._ttl


@dataclass(frozen=True)
class QueryAsk:
    """An analyst's query, as the home received it."""

    sql: str
    purpose: str = ""
    nodes: tuple[str, ...] = ()
    explain: bool = False
    allow_partial: bool = False


class Home:
    def __init__(
        self,
        node_id: str,
        membership: Callable[[], Membership],
        vouching: Vouching,
        ask: Callable[[Member, Envelope], PartialAnswer],
        executor: Executor,
        receipts: ReceiptStore,
        run_sql: RunSql,
        max_payload_bytes: int,
    ) -> None:
        self.node_id = node_id
        self.max_payload_bytes = max_payload_bytes  # what one answer may carry
        self.membership = membership
        self.vouching = vouching
        self.ask = ask
        self.executor = executor
        self.receipts = receipts
        self.run_sql = run_sql  # merge queries, in a database that holds no dataset
        # The answer is a pure function of the plan and the partials' bytes: when owners
        # send exactly what they sent before, the merge need not run again.
        self._answers = BoundedCache(
            ANSWER_CACHE_BYTES, max_entries=ANSWER_CACHE_ENTRIES, per_entry=entry_cost
        )
        self._no_spend = NoSpend()

    def targets(self, plan_node: str, nodes: list[str]) -> list[Member]:
        members = self.membership()
        wanted = [plan_node] if plan_node else list(nodes)
        if wanted:
            out = []
            for node_id in dict.fromkeys(wanted):
                m = members.get(node_id)
                if m is None:
                    raise NotFound(f"no member {node_id!r} in the federation")
                out.append(m)
            chosen = {m.id for m in out}

            def covered(m: Member) -> bool:  # reached through a chosen ancestor's relay
                parent = members.get(m.parent) if m.parent else None
                while parent is not None:
                    if parent.id in chosen:
                        return True
                    parent = members.get(parent.parent) if parent.parent else None
                return False

            return [m for m in out if not covered(m)]
        # Top-level members; a province relays to its cities.
        return [m for m in members.members if not m.parent]

    def query(self, ask: QueryAsk, caller: Requester, deadline: float) -> QueryAnswer:
        self.vouching.check_own_user(caller)
        check_purpose(ask.purpose)
        plan = plan_or_refuse(ask.sql)
        if plan.node and ask.nodes:
            raise InvalidArgument("use FROM node.dataset or --nodes, not both")
        request_id = uuid.uuid4().hex
        targets = self.targets(plan.node, list(ask.nodes))
        unsigned = Envelope(
            request_id=request_id,
            requester=caller,
            home_node=self.node_id,
            operation="query",
            body=plan.sql,
            purpose=ask.purpose,
            explain=ask.explain,
            deadline=deadline,
        )
        facts = {
            "request_id": request_id,
            "requester": str(caller),
            "dataset": plan.dataset,
            "plan_digest": plan.digest,
        }
        spend_key = (plan.dataset, plan.node, str(caller), tuple(m.id for m in targets))
        if not ask.explain and not ask.allow_partial and not self._no_spend.known(spend_key):
            check = self.vouching.sign(dataclasses.replace(unsigned, check=True))
            checked = self._fan_out(plan, targets, check, deadline)
            refused = [o for o in checked.owners if not o.ok]
            if refused:  # nobody released, nobody spent
                raise self._failed(tuple(checked.owners), refused[0], facts, deadline)
        found = self._fan_out(plan, targets, self.vouching.sign(unsigned), deadline)
        owners = tuple(found.owners)
        failed = [o for o in owners if not o.ok]
        if failed and not ask.explain and (not ask.allow_partial or len(failed) == len(owners)):
            raise self._failed(owners, failed[0], facts, deadline)
        missing = tuple(o.node_id for o in failed)
        # what every owner that released spent, merged or not (its receipt says it did)
        epsilon = sum(o.epsilon for o in owners if (o.ok or o.receipt) and not ask.explain)
        if not ask.explain and not failed:
            spends = epsilon > 0 or not all(o.no_spend for o in owners)
            self._no_spend.learn(spend_key, spends=spends)
        result = QueryAnswer(
            request_id=request_id,
            plan_sql=plan.sql,
            plan_digest=plan.digest,
            owners=owners,
            missing=missing,
            epsilon_spent=epsilon,
        )
        if ask.explain:
            return result
        if not found.tables:  # its entry and the receipts of any release kept, as a
            # failure's (review, 2026-12-05: owners that spent were left unrecorded)
            reason = "no owner contributed to the result"
            self._record(
                owners,
                {
                    "kind": "query.failed",
                    "time": utc(),
                    **facts,
                    "code": "UNAVAILABLE",
                    "reason": reason,
                },
            )
            raise Unavailable(reason)
        try:
            table, payload = self._answer(plan, found.tables, found.payloads, epsilon > 0)
            # over it, gRPC's send would fail after the answer was recorded as given
            check_size(payload, self.max_payload_bytes, "the answer")
        except ResourceExhausted as exc:
            failure = {"kind": "query.failed", "time": utc(), **facts}
            failure.update(code=exc.code.name, reason=exc.message)
            self._record(owners, failure)
            raise
        except (FedgateError, pa.ArrowException, ValueError, ArithmeticError, TypeError) as exc:
            # Owners have released: keep their receipts and record why no answer came. An
            # error of the merge's own libraries is named by its kind alone: its text may
            # hold an owner's partial value.
            if isinstance(exc, FedgateError):
                reason = exc.message
            elif isinstance(exc, PartialError):
                reason = str(exc)
            else:
                reason = f"the merge failed ({type(exc).__name__})"
            failure = {"kind": "query.failed", "time": utc(), **facts}
            failure.update(code="INVALID_ARGUMENT", reason=reason)
            self._record(owners, failure)
            raise InvalidArgument(f"the owners' partials could not be combined: {reason}") from None
        self._record(
            owners,
            {
                "kind": "query.answered",
                "time": utc(),
                **facts,
                "owners": [o.node_id for o in owners if o.ok],
                "missing": list(missing),
                "rows": table.num_rows,
                "epsilon": epsilon,
            },
        )
        log.info(
            "answered request=%s requester=%s dataset=%s owners=%d missing=%d rows=%d",
            request_id,
            caller,
            plan.dataset,
            len(owners) - len(failed),
            len(missing),
            table.num_rows,
        )
        return dataclasses.replace(result, payload=payload)

    def _fan_out(
        self, plan: QueryPlan, targets: list[Member], env: Envelope, deadline: float
    ) -> Gathered:
        outcomes = fan_out(
            self.executor,
            targets,
            lambda m: self.ask(m, env),
            timeout=max(0.0, deadline - time.monotonic()),
            to_error=error_of,
        )
        found = gather(
            plan,
            outcomes,
            speaks_for=self.membership().subtree,
            receipt_problem=lambda node, text, payload: self.receipts.problem(
                text,
                node,
                env.request_id,
                covering=None if payload is None else (payload, "query"),
                asked=query_asked(env, plan),
            ),
        )
        if not found.published:
            raise NotFound(f"no member publishes the dataset {plan.dataset!r}")
        return found

    def _failed(
        self,
        owners: tuple[OwnerReport, ...],
        first: OwnerReport,
        facts: dict,
        deadline: float,
    ) -> FedgateError:
        """The error for a query an owner failed; receipts of owners that did release
        are kept even though the answer fails."""
        assert first.error is not None
        error = first.error
        self._record(
            owners,
            {
                "kind": "query.failed",
                "time": utc(),
                **facts,
                "owner": first.node_id,
                "code": error.code.name,
                "reason": cut(error.reason),  # an owner's text: bounded in the log
            },
        )
        # Which owner, and the request its own audit entries name: for programs, not people.
        details = {"owner": first.node_id, "request_id": facts["request_id"]}
        if error.code.late and time.monotonic() >= deadline:
            # The caller's own time ran out: that, not the owner, is the reason.
            return DeadlineExceeded(
                f"the query's deadline passed before owner {first.node_id} answered; "
                "allow more time (--timeout)",
                details=details,
            )
        if error.code is Code.DEADLINE_EXCEEDED:  # slow, not down: the status says so
            return DeadlineExceeded(
                f"owner {first.node_id} did not answer in time ({error.reason}); allow more "
                "time (--timeout), or --allow-partial answers without it",
                details=details,
            )
        if error.code.late:
            return Unavailable(
                f"owner {first.node_id} is unavailable ({error.reason}); "
                "--allow-partial answers without it",
                details=details,
            )
        refused = f"owner {first.node_id} refused: {error.reason}"
        return FedgateError.of(Error(error.code, refused, details))

    def _answer(
        self, plan: QueryPlan, tables: list[pa.Table], payloads: list[bytes], noisy: bool
    ) -> tuple[pa.Table, bytes]:
        """The final table and its IPC bytes, merged once per distinct set of partials
        (noisy partials never repeat, so their answers are not kept)."""
        if noisy:
            result = answer(plan, tables, self.run_sql)
            return result, to_ipc(result)
        key = (plan.sql, tuple(hashlib.sha256(p).digest() for p in payloads))
        hit = self._answers.get(key)
        if hit is None:
            result = answer(plan, tables, self.run_sql)
            hit = (result, to_ipc(result))
            self._answers.put(key, hit, result.nbytes + len(hit[1]))
        return hit

    def _record(self, owners: tuple[OwnerReport, ...], entry: dict) -> None:
        """Keep the owners' receipts and the home's own audit entry, in one transaction."""
        kept = [(o.node_id, o.receipt) for o in owners if o.receipt]
        self.receipts.keep(entry["request_id"], kept, entry)
