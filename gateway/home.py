"""The home node's side of a federated query: plan, fan out, merge, finish, keep receipts."""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Executor

import grpc
import pyarrow as pa

from federation.fanout import fan_out
from federation.membership import Member, Membership
from federation.partials import PartialError, answer, to_ipc
from federation.sqlsubset import QueryPlan
from gateway.audit import AuditLog
from gateway.cache import BoundedCache
from gateway.errors import (
    DeadlineExceeded,
    FedgateError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from gateway.grants import utc
from gateway.identity import Identity
from gateway.owner import Owner, collect, describe_error, plan_or_refuse, sign_request
from gateway.rpc.v1 import common_pb2, gateway_pb2, peer_pb2
from gateway.state import State

log = logging.getLogger("fedgate.home")

_CODES = {c.name: c for c in grpc.StatusCode}

ANSWER_CACHE_BYTES = 16 * 1024 * 1024


class OwnerRefused(FedgateError):
    """An owner refused; carries the owner's own status code."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class Home:
    def __init__(
        self,
        node_id: str,
        owner: Owner,
        state: State,
        membership: Callable[[], Membership],
        call_peer: Callable[[Member, peer_pb2.PartialRequest, float], peer_pb2.PartialResponse],
        executor: Executor,
    ) -> None:
        self.node_id = node_id
        self.owner = owner
        self.state = state
        self.membership = membership
        self.call_peer = call_peer
        self.executor = executor
        # The answer is a pure function of the plan and the partials' bytes: when owners
        # send exactly what they sent before, the merge need not run again.
        self._answers = BoundedCache(ANSWER_CACHE_BYTES)

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

    def query(
        self, req: gateway_pb2.QueryRequest, caller: Identity, deadline: float
    ) -> gateway_pb2.QueryResponse:
        home_org = self.membership().get(self.node_id)
        if home_org is not None and caller.org != home_org.org:
            raise PermissionDenied(
                f"{self.node_id} is not the home node of {caller.org!r}: connect to your own"
            )
        plan = plan_or_refuse(req.sql)
        if plan.node and req.nodes:
            raise InvalidArgument("use FROM node.dataset or --nodes, not both")
        request_id = uuid.uuid4().hex
        targets = self.targets(plan.node, list(req.nodes))
        preq = peer_pb2.PartialRequest(
            request_id=request_id,
            sql=plan.sql,
            requester=common_pb2.Requester(role=caller.role, id=caller.id, org=caller.org),
            home_node=self.node_id,
            purpose=req.purpose,
            include_children=True,
            explain=req.explain,
        )
        sign_request(preq, self.owner.signer)

        def ask(member: Member) -> peer_pb2.PartialResponse:
            if member.id == self.node_id:
                return self.owner.execute(preq, caller, deadline)
            return self.call_peer(member, preq, deadline)

        outcomes = fan_out(
            self.executor,
            targets,
            ask,
            timeout=max(0.0, deadline - time.monotonic()),
            describe_error=describe_error,
        )
        resp = gateway_pb2.QueryResponse(
            request_id=request_id, plan=plan.sql, plan_digest=plan.digest
        )
        tables, payloads, published = collect(plan, outcomes, resp.owners)
        if not published:
            raise NotFound(f"no member publishes the dataset {plan.dataset!r}")
        failed = [o for o in resp.owners if not o.ok]
        all_failed = len(failed) == len(resp.owners)
        facts = {
            "request_id": request_id,
            "requester": str(caller),
            "dataset": plan.dataset,
            "plan_digest": plan.digest,
        }
        if failed and not req.explain and (not req.allow_partial or all_failed):
            first = failed[0]
            # Receipts of owners that did release are kept even though the answer fails.
            self._record(
                resp.owners,
                {
                    "kind": "query.failed",
                    "time": utc(),
                    **facts,
                    "owner": first.node_id,
                    "code": first.error_code,
                    "reason": first.error,
                },
            )
            code = _CODES.get(first.error_code, grpc.StatusCode.UNAVAILABLE)
            late = (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE)
            if code in late and time.monotonic() >= deadline:
                # The caller's own time ran out: that, not the owner, is the reason.
                raise DeadlineExceeded(
                    f"the query's deadline passed before owner {first.node_id} answered; "
                    "allow more time (--timeout)"
                )
            if code in late:
                raise Unavailable(
                    f"owner {first.node_id} is unavailable ({first.error}); "
                    "--allow-partial answers without it"
                )
            raise OwnerRefused(code, f"owner {first.node_id} refused: {first.error}")
        resp.missing.extend(o.node_id for o in failed)
        resp.epsilon_spent = sum(o.epsilon for o in resp.owners if o.ok and not req.explain)
        if req.explain:
            return resp
        if not tables:
            raise Unavailable("no owner contributed to the result")
        try:
            result, resp.arrow_ipc = self._answer(plan, tables, payloads, resp.epsilon_spent > 0)
        except (FedgateError, PartialError) as exc:
            # Owners have released: keep their receipts and record why no answer came.
            reason = exc.message if isinstance(exc, FedgateError) else str(exc)
            self._record(
                resp.owners,
                {
                    "kind": "query.failed",
                    "time": utc(),
                    **facts,
                    "code": "INVALID_ARGUMENT",
                    "reason": reason,
                },
            )
            raise InvalidArgument(f"the owners' partials could not be combined: {reason}") from None
        self._record(
            resp.owners,
            {
                "kind": "query.answered",
                "time": utc(),
                **facts,
                "owners": [o.node_id for o in resp.owners if o.ok],
                "missing": list(resp.missing),
                "rows": result.num_rows,
                "epsilon": resp.epsilon_spent,
            },
        )
        log.info(
            "answered request=%s requester=%s dataset=%s owners=%d missing=%d rows=%d",
            request_id,
            caller,
            plan.dataset,
            len([o for o in resp.owners if o.ok]),
            len(resp.missing),
            result.num_rows,
        )
        return resp

    def _answer(
        self, plan: QueryPlan, tables: list[pa.Table], payloads: list[bytes], noisy: bool
    ) -> tuple[pa.Table, bytes]:
        """The final table and its IPC bytes, merged once per distinct set of partials
        (noisy partials never repeat, so their answers are not kept)."""
        if noisy:
            result = answer(plan, tables, self.owner.engine.run_on_table)
            return result, to_ipc(result)
        key = (plan.sql, tuple(hashlib.sha256(p).digest() for p in payloads))
        hit = self._answers.get(key)
        if hit is None:
            result = answer(plan, tables, self.owner.engine.run_on_table)
            hit = (result, to_ipc(result))
            self._answers.put(key, hit, result.nbytes + len(hit[1]))
        return hit

    def _record(self, owners, entry: dict) -> None:  # type: ignore[no-untyped-def]
        """Keep the owners' receipts and the home's own audit entry, in one transaction."""
        now = utc()
        rows = [(entry["request_id"], o.node_id, o.receipt, now) for o in owners if o.receipt]

        def work(db) -> None:  # type: ignore[no-untyped-def]
            db.executemany("INSERT OR REPLACE INTO receipts VALUES (?, ?, ?, ?)", rows)
            AuditLog.append_in(db, entry)

        # Group commit: concurrent answers share one fsync.
        self.state.group(work)
