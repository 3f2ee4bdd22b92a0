"""The owner's side of a federated query: re-check, run, protect, spend, sign, release.

An owner trusts nothing the home node decided. It re-parses the SQL, picks the grant
from its *own* store, runs the generated SQL on its own engine, suppresses and noises
what it releases, spends the grant's use and budget atomically at release time (so a
grant revoked meanwhile stops the release), and signs a receipt. As a relay it does the
same for its children and returns one merged, still-protected partial.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass

import grpc
import pyarrow as pa

from federation.fanout import fan_out
from federation.membership import Member, Membership
from federation.partials import (
    PartialError,
    check_partial,
    from_ipc,
    merge,
    partial_query,
    to_ipc,
)
from federation.sqlsubset import QueryError, QueryPlan, parse
from gateway import privacy, receipts
from gateway.audit import AuditLog
from gateway.catalog import Catalog, CatalogEntry
from gateway.engine import Engine
from gateway.errors import (
    DeadlineExceeded,
    FedgateError,
    InvalidArgument,
    PermissionDenied,
    ResourceExhausted,
)
from gateway.grants import Grant, GrantStore, decide, utc
from gateway.identity import Identity
from gateway.rpc.v1 import common_pb2, peer_pb2

log = logging.getLogger("fedgate.owner")


@dataclass
class Signer:
    key: object  # EC private key of the node
    cert_pem: bytes

    def sign(self, body: dict) -> receipts.Receipt:
        return receipts.sign(body, self.key, self.cert_pem)  # type: ignore[arg-type]


def describe_error(exc: BaseException) -> str:
    """'CODE: message', the form in which failures travel in OwnerResult."""
    if isinstance(exc, grpc.RpcError):
        return f"{exc.code().name}: {exc.details()}"  # type: ignore[attr-defined]
    if isinstance(exc, FedgateError):
        return f"{exc.code.name}: {exc.message}"
    return f"INTERNAL: {type(exc).__name__}: {exc}"


def collect(
    plan: QueryPlan,
    outcomes: list,
    owners,
    via: str = "",  # type: ignore[no-untyped-def]
) -> tuple[list[pa.Table], list[bytes], bool]:
    """Gather fanned-out partial responses: each owner's result goes into ``owners``, each
    well-formed partial into the returned tables (and its bytes, in the same order, into
    the payloads); True if any member holds the dataset."""
    tables: list[pa.Table] = []
    payloads: list[bytes] = []
    published = False
    for out in outcomes:
        if out.value is None:
            code, _, message = (out.error or "UNAVAILABLE: no answer").partition(": ")
            if code not in grpc.StatusCode.__members__:  # fan-out's own timeout
                code, message = "UNAVAILABLE", out.error
            owners.add(node_id=out.target.id, ok=False, error=message, error_code=code, via=via)
            published = True
            continue
        if not out.value.published:
            continue
        published = True
        for o in out.value.owners:
            copy = owners.add()
            copy.CopyFrom(o)
            copy.via = copy.via or via
        if out.value.arrow_ipc:
            try:
                tables.append(check_partial(plan, from_ipc(out.value.arrow_ipc), out.target.id))
                payloads.append(out.value.arrow_ipc)
            except (PartialError, pa.ArrowInvalid) as exc:
                owners.add(
                    node_id=out.target.id,
                    ok=False,
                    error=str(exc),
                    error_code="FAILED_PRECONDITION",
                    via=via,
                )
    return tables, payloads, published


def vouched(req: peer_pb2.PartialRequest) -> dict:
    """The fields a home node vouches for, as it signs them."""
    r = req.requester
    return {
        "request_id": req.request_id,
        "sql": req.sql,
        "home_node": req.home_node,
        "requester": {"role": r.role, "id": r.id, "org": r.org},
        "purpose": req.purpose,
        "explain": req.explain,
    }


def sign_request(req: peer_pb2.PartialRequest, signer: Signer) -> None:
    """The home node signs what it vouches for before the request leaves it."""
    signed = signer.sign(vouched(req))
    req.home_signature, req.home_cert = signed.signature, signed.cert_pem


def plan_or_refuse(sql: str) -> QueryPlan:
    try:
        return parse(sql)
    except QueryError as exc:
        raise InvalidArgument(str(exc)) from None


def error_result(
    node_id: str, exc: FedgateError | grpc.RpcError, via: str = ""
) -> common_pb2.OwnerResult:
    if isinstance(exc, grpc.RpcError):
        code, message = exc.code().name, exc.details() or ""  # type: ignore[attr-defined]
    else:
        code, message = exc.code.name, exc.message
    return common_pb2.OwnerResult(
        node_id=node_id, ok=False, error=message, error_code=code, via=via
    )


def _protect(raw: pa.Table, k: int) -> tuple[privacy.Released, bytes]:
    """Without DP: groups under ``k`` suppressed (a raw read has no groups: as is)."""
    released = privacy.suppress(raw, k)
    return released, to_ipc(released.table)


class Owner:
    def __init__(
        self,
        node_id: str,
        catalog: Catalog,
        grants: GrantStore,
        engine: Engine,
        signer: Signer,
        audit: AuditLog,
        membership: Callable[[], Membership],
        call_child: Callable[[Member, peer_pb2.PartialRequest, float], peer_pb2.PartialResponse],
        executor: Executor,
        max_result_bytes: int = 4 * 1024 * 1024,
        ca_bundle: list | None = None,
    ) -> None:
        self.node_id = node_id
        self.ca_bundle = ca_bundle or []
        self.max_result_bytes = max_result_bytes - 64 * 1024  # room for the envelope
        self._sql_cache: dict[tuple, str] = {}
        self.catalog = catalog
        self.grants = grants
        self.engine = engine
        self.signer = signer
        self.audit = audit
        self.membership = membership
        self.call_child = call_child
        self.executor = executor

    # --- the request as a whole ---------------------------------------------------------

    def check_caller(self, caller_node: str, req: peer_pb2.PartialRequest) -> Identity:
        """The home node vouches only for its own users; relays only for their home."""
        members = self.membership()
        home = members.get(req.home_node)
        me = members.get(self.node_id)
        if home is None:
            raise PermissionDenied(f"home node {req.home_node!r} is not a member")
        if caller_node != req.home_node and (me is None or me.parent != caller_node):
            raise PermissionDenied(
                f"node {caller_node!r} may not forward a request of home node {req.home_node!r}"
            )
        r = req.requester
        if r.role not in ("analyst", "operator"):
            raise PermissionDenied(f"requester role {r.role!r} may not query")
        if r.org != home.org:
            raise PermissionDenied(
                f"home node {home.id} may only vouch for users of {home.org!r}, not {r.org!r}"
            )
        if self.node_id in req.path:
            raise InvalidArgument(f"request loop through {self.node_id}")
        if caller_node != req.home_node:  # relayed: the home's own signature must vouch
            try:
                receipts.verify_signed(
                    vouched(req), req.home_signature, req.home_cert, self.ca_bundle, req.home_node
                )
            except InvalidArgument as exc:
                raise PermissionDenied(
                    f"relayed request not vouched for by home node {req.home_node}: {exc.message}"
                ) from None
        return Identity(role=r.role, id=r.id, org=r.org, serial="", not_after=None)  # type: ignore[arg-type]

    def execute(
        self, req: peer_pb2.PartialRequest, requester: Identity, deadline: float
    ) -> peer_pb2.PartialResponse:
        plan = plan_or_refuse(req.sql)
        resp = peer_pb2.PartialResponse(node_id=self.node_id)
        tables: list[pa.Table] = []
        entry = self.catalog.get(plan.dataset)
        if entry is not None and entry.descriptor.level == "L4":
            # Core data is not in anyone else's catalog; answer as if it did not exist.
            self._audit_refusal(
                plan, req, requester, "NOT_FOUND", "L4 (core) dataset: nothing leaves the node"
            )
            entry = None
        if entry is not None:
            resp.published = True
            result, table = self._own(plan, entry, req, requester, deadline)
            resp.owners.append(result)
            if table is not None:
                tables.append(table)
        if req.include_children:
            children = self.membership().children(self.node_id)
            child_req = peer_pb2.PartialRequest()
            child_req.CopyFrom(req)
            child_req.path.append(self.node_id)
            outcomes = fan_out(
                self.executor,
                children,
                lambda m: self.call_child(m, child_req, deadline),
                timeout=max(0.0, deadline - time.monotonic()),
                describe_error=describe_error,
            )
            child_tables, _, published = collect(plan, outcomes, resp.owners, via=self.node_id)
            tables.extend(child_tables)
            resp.published = resp.published or published
        if tables and not req.explain:
            try:
                merged = merge(plan, tables) if len(tables) > 1 else tables[0]
            except PartialError as exc:  # the releases stand; the merged partial does not
                resp.owners.append(
                    common_pb2.OwnerResult(
                        node_id=self.node_id,
                        ok=False,
                        error=str(exc),
                        error_code="FAILED_PRECONDITION",
                        via=self.node_id,
                    )
                )
                return resp
            resp.arrow_ipc = to_ipc(merged)
        return resp

    def _audit_refusal(
        self,
        plan: QueryPlan,
        req: peer_pb2.PartialRequest,
        requester: Identity,
        code: str,
        reason: str,
    ) -> None:
        self.audit.append(
            {
                "kind": "query.refused",
                "time": utc(),
                "request_id": req.request_id,
                "requester": str(requester),
                "requester_org": requester.org,
                "home_node": req.home_node,
                "dataset": plan.dataset,
                "plan_digest": plan.digest,
                "code": code,
                "reason": reason,
                "dry_run": req.explain,
            }
        )

    def _partial_sql(
        self,
        plan: QueryPlan,
        table: str,
        entry: CatalogEntry,
        clamp: dict[str, tuple[float, float]] | None,
    ) -> str:
        """Generated SQL, cached: the same query against the same data is asked often."""
        bounds = tuple(sorted(clamp.items())) if clamp is not None else None
        key = (plan.sql, table, entry.quality.sha256, bounds)
        sql = self._sql_cache.get(key)
        if sql is None:
            ints = [c.name for c in entry.descriptor.columns if c.type == "int64"]
            sql = partial_query(plan, table, integer_columns=ints, clamp=clamp)
            if len(self._sql_cache) > 1024:
                self._sql_cache.clear()
            self._sql_cache[key] = sql
        return sql

    # --- this node's own partition --------------------------------------------------------

    def _own(
        self,
        plan: QueryPlan,
        entry: CatalogEntry,
        req: peer_pb2.PartialRequest,
        requester: Identity,
        deadline: float,
    ) -> tuple[common_pb2.OwnerResult, pa.Table | None]:
        try:
            return self._release(plan, entry, req, requester, deadline)
        except FedgateError as exc:
            self._audit_refusal(plan, req, requester, exc.code.name, exc.message)
            log.warning(
                "refused query request=%s requester=%s home=%s dataset=%s code=%s reason=%s",
                req.request_id,
                requester,
                req.home_node,
                plan.dataset,
                exc.code.name,
                exc.message,
            )
            return error_result(self.node_id, exc), None

    def _release(
        self,
        plan: QueryPlan,
        entry: CatalogEntry,
        req: peer_pb2.PartialRequest,
        requester: Identity,
        deadline: float,
    ) -> tuple[common_pb2.OwnerResult, pa.Table | None]:
        desc = entry.descriptor
        decision = decide(
            self.grants.list(desc.name), plan, desc, requester, req.home_node, req.purpose, utc()
        )
        if req.explain:
            roles = {c: sorted(r) for c, r in sorted(plan.column_roles.items())}
            text = json.dumps(
                {
                    "grant": decision.grant.id,
                    "level": decision.level,
                    "min_group_size": decision.min_group_size,
                    "epsilon": decision.epsilon,
                    "columns": roles,
                    "budget_left": decision.grant.dp_budget - decision.grant.epsilon_spent
                    if decision.grant.uses_dp
                    else None,
                },
                sort_keys=True,
            )
            return common_pb2.OwnerResult(
                node_id=self.node_id,
                ok=True,
                grant_id=decision.grant.id,
                epsilon=decision.epsilon,
                explain=text,
            ), None
        table_name = self.engine.ensure_loaded(entry)
        sql = self._partial_sql(plan, table_name, entry, decision.clamp)
        raw = self.engine.run(
            sql, timeout=deadline - time.monotonic(), version=entry.quality.sha256
        )
        if decision.epsilon > 0 and not plan.is_raw:  # fresh noise every time, never kept
            released = privacy.add_noise(
                raw, epsilon=decision.epsilon, k=decision.min_group_size, clamp=decision.clamp or {}
            )
            payload = to_ipc(released.table)
        else:  # deterministic: computed once per cached result
            k = decision.min_group_size
            released, payload = self.engine.derive(
                sql,
                entry.quality.sha256,
                raw,
                ("protected", k),
                lambda t: _protect(t, k),
                lambda v: v[0].table.nbytes + len(v[1]),
            )
        if len(payload) > self.max_result_bytes:
            raise ResourceExhausted(
                f"the partial result is {len(payload):,} bytes, over the {self.max_result_bytes:,}"
                "-byte message limit: filter more or group by coarser columns"
            )
        facts = {
            "request_id": req.request_id,
            "owner": self.node_id,
            "requester": str(requester),
            "requester_org": requester.org,
            "home_node": req.home_node,
            "purpose": req.purpose,
            "dataset": desc.name,
            "operation": "query",
            "plan_digest": plan.digest,
            "result_digest": receipts.digest(payload),
            "groups_released": released.table.num_rows,
            "groups_suppressed": released.suppressed,
            "epsilon": released.epsilon,
        }

        def record(grant: Grant) -> dict:
            return {"kind": "release", "time": utc(), "grant_id": grant.id, **facts}

        if time.monotonic() >= deadline:  # nobody is waiting for it: do not spend
            raise DeadlineExceeded("the query's deadline passed before the release")
        # Release point: re-check the grant, spend, and log the release, in one durable
        # transaction. Only after it commits does anything leave this node.
        grant, entry = self.grants.spend(
            # the epsilon OpenDP's privacy map actually charged for this release
            dataclasses.replace(decision, epsilon=released.epsilon),
            utc(),
            record,
        )
        body = {**entry.data, "audit_seq": entry.seq, "audit_hash": entry.hash}
        receipt = self.signer.sign(body)
        log.info(
            "released request=%s requester=%s home=%s dataset=%s grant=%s groups=%d "
            "suppressed=%d epsilon=%g",
            req.request_id,
            requester,
            req.home_node,
            desc.name,
            grant.id,
            released.table.num_rows,
            released.suppressed,
            released.epsilon,
        )
        return common_pb2.OwnerResult(
            node_id=self.node_id,
            ok=True,
            groups_released=released.table.num_rows,
            groups_suppressed=released.suppressed,
            epsilon=released.epsilon,
            grant_id=grant.id,
            receipt=receipt.to_json(),
        ), released.table
