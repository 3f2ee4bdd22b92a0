"""Conversions between our typed records and the v1 wire messages, in one place.

Protobuf stays at the edge: servicers and the transport call these functions, and every
module behind them works with dataclasses (``federation.envelope``, ``federation.reports``,
``gateway.policy``, ``gateway.catalog``). No other module of ours builds a pb2 message.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from grpc_health.v1 import health_pb2

from federation.envelope import Envelope, Requester
from federation.membership import Member
from federation.outcome import Code, failure
from federation.psi import frames as psi
from federation.reports import Explanation, OwnerReport, PartialAnswer, QueryAnswer
from federation.training import app_bundle
from federation.training.app_bundle import AppBundle
from federation.training.errors import TrainingError
from gateway.access import AccessDecision, AccessRequest, ColumnControls
from gateway.catalog import CatalogEntry
from gateway.descriptor import ColumnSpec, DatasetDescriptor
from gateway.disclosure import DisclosedGrant, DisclosedUsage, DisclosureReport
from gateway.errors import InvalidArgument
from gateway.identity import Identity
from gateway.limits import cut
from gateway.policy.floors import FLOORS
from gateway.policy.model import Grant
from gateway.roles.home import QueryAsk
from gateway.roles.psi_home import PsiAsk, PsiSideAsk
from gateway.roles.train_home import (
    ModelPiece,
    OwnerBatch,
    TrainAsk,
    TrainEvent,
    TrainResult,
    TrainRound,
)
from gateway.rpc.v1 import common_pb2, gateway_pb2, peer_pb2
from gateway.text import check_purpose
from gateway.training.apps import ApprovedApp
from gateway.training.runs import RunStatus
from gateway.training.spec import TrainSpec
from gateway.training.transfers import PIECE_BYTES, Answer, Piece, pieces
from gateway.witness import SignedHead, WitnessedHead, WitnessRequest

if TYPE_CHECKING:
    from gateway.roles.federated_catalog import Listing
    from gateway.witnessing import WitnessRound  # it imports serde: a type-only import


def column_to_proto(c: ColumnSpec, dataset_level: str) -> common_pb2.Column:
    msg = common_pb2.Column(
        name=c.name,
        type=c.type,
        level=max(c.level or dataset_level, dataset_level),
        description=c.description,
    )
    if c.lower is not None:
        msg.lower = c.lower
    if c.upper is not None:
        msg.upper = c.upper
    msg.categories.extend(c.categories)
    return msg


def entry_to_proto(
    entry: CatalogEntry, node_id: str, *, show_extremes: bool = False
) -> common_pb2.DatasetInfo:
    """A catalog entry. Min/max can single out one record (the largest employer, the
    highest wage), so they are shown only for L1 columns, or to the node's own operators.
    A column whose level needs DP (L3) or lets nothing leave (L4) has no statistic shown
    but to them: its exact null rate is a count of its own, released to every caller with
    no noise (review, 2026-12-05), so such a column has no entry in the quality report."""
    d, q = entry.descriptor, entry.quality
    quality = common_pb2.QualityReport(rows=q.rows, file_bytes=q.file_bytes, sha256=q.sha256)
    for c in q.columns:
        level = d.column_level(c.name)
        if not show_extremes and FLOORS[level].dp_required:
            continue
        cq = quality.columns.add(name=c.name, null_rate=c.null_rate)
        if not (show_extremes or level == "L1"):
            continue
        if c.min is not None:
            cq.min = c.min
        if c.max is not None:
            cq.max = c.max
    return common_pb2.DatasetInfo(
        node_id=node_id,
        name=d.name,
        title=d.title,
        description=d.description,
        department=d.department,
        level=d.level,
        update_frequency=d.update_frequency,
        columns=[column_to_proto(c, d.level) for c in d.columns],
        rows=q.rows,
        registered_at=entry.registered_at,
        updated_at=entry.updated_at,
        quality=quality,
        format=d.format,
    )


def descriptor_to_proto(d: DatasetDescriptor) -> gateway_pb2.DatasetDeclaration:
    msg = gateway_pb2.DatasetDeclaration(
        name=d.name,
        title=d.title,
        description=d.description,
        department=d.department,
        level=d.level,
        update_frequency=d.update_frequency,
        path=d.path,
        format=d.format,
    )
    for c in d.columns:
        col = msg.columns.add(name=c.name, type=c.type, level=c.level, description=c.description)
        if c.lower is not None:
            col.lower = c.lower
        if c.upper is not None:
            col.upper = c.upper
        col.categories.extend(c.categories)
    return msg


def descriptor_from_proto(msg: gateway_pb2.DatasetDeclaration) -> DatasetDescriptor:
    return DatasetDescriptor(
        name=msg.name,
        title=msg.title,
        description=msg.description,
        department=msg.department,
        level=msg.level,
        update_frequency=msg.update_frequency,
        path=msg.path,
        format=msg.format,
        columns=tuple(
            ColumnSpec(
                name=c.name,
                type=c.type,
                level=c.level,
                description=c.description,
                lower=c.lower if c.HasField("lower") else None,
                upper=c.upper if c.HasField("upper") else None,
                categories=tuple(c.categories),
            )
            for c in msg.columns
        ),
    )


def grant_to_proto(g: Grant, status: str) -> common_pb2.Grant:
    return common_pb2.Grant(
        id=g.id,
        dataset=g.dataset,
        grantee_kind=g.grantee_kind,
        grantee=g.grantee,
        operations=list(g.operations),
        columns=[
            common_pb2.ColumnControls(column=c, controls=list(v)) for c, v in g.columns.items()
        ],
        min_group_size=g.min_group_size,
        dp_epsilon=g.dp_epsilon,
        dp_budget=g.dp_budget,
        purpose=g.purpose,
        valid_from=g.valid_from,
        expires=g.expires,
        max_uses=g.max_uses,
        uses=g.uses,
        epsilon_spent=g.epsilon_spent,
        revoked_at=g.revoked_at,
        created_by=g.created_by,
        created_at=g.created_at,
        status=status,
        grantee_org=g.grantee_org,
        exact=g.exact,
        train_tasks=list(g.train_tasks),
        max_rounds=g.max_rounds,
        max_examples=g.max_examples,
    )


def grant_from_proto(msg: common_pb2.Grant) -> Grant:
    return Grant(
        id="",
        dataset=msg.dataset,
        grantee_kind=msg.grantee_kind,
        grantee=msg.grantee,
        operations=tuple(msg.operations),
        columns={c.column: tuple(c.controls) for c in msg.columns},
        min_group_size=msg.min_group_size,
        dp_epsilon=msg.dp_epsilon,
        dp_budget=msg.dp_budget,
        purpose=msg.purpose,
        valid_from=msg.valid_from,
        expires=msg.expires,
        max_uses=msg.max_uses,
        grantee_org=msg.grantee_org,
        exact=msg.exact,
        train_tasks=tuple(msg.train_tasks),
        max_rounds=msg.max_rounds,
        max_examples=msg.max_examples,
    )


def catalog_response(
    node_id: str, entries: Iterable[CatalogEntry], *, show_extremes: bool
) -> common_pb2.CatalogResponse:
    return common_pb2.CatalogResponse(
        node_id=node_id,
        datasets=[entry_to_proto(e, node_id, show_extremes=show_extremes) for e in entries],
    )


def catalog_request(name_contains: str) -> common_pb2.CatalogRequest:
    return common_pb2.CatalogRequest(name_contains=name_contains)


def whoami_response(node: Identity, member: Member, caller: Identity) -> gateway_pb2.WhoAmIResponse:
    return gateway_pb2.WhoAmIResponse(
        node_id=node.id,
        node_org=node.org,
        node_level=member.level,
        caller_role=caller.role,
        caller_id=caller.id,
        caller_org=caller.org,
        caller_serial=caller.serial,
    )


def federated_catalog_response(
    node: Identity, member: Member, own: common_pb2.CatalogResponse, listings: Sequence[Listing]
) -> gateway_pb2.FederatedCatalogResponse:
    resp = gateway_pb2.FederatedCatalogResponse(home_node=node.id)
    resp.members.add(
        node_id=node.id,
        org=node.org,
        level=member.level,
        parent=member.parent,
        address=member.address,
        reachable=True,
        datasets=own.datasets,
    )
    for x in listings:
        m = x.member
        resp.members.add(
            node_id=m.id,
            org=m.org,
            level=m.level,
            parent=m.parent,
            address=m.address,
            reachable=x.reachable,
            error=x.error,
            latency_ms=x.latency_ms,
            datasets=list(x.datasets),
        )
    return resp


def register_response(
    entry: CatalogEntry, node_id: str, replaced: bool
) -> gateway_pb2.RegisterDatasetResponse:
    return gateway_pb2.RegisterDatasetResponse(
        dataset=entry_to_proto(entry, node_id, show_extremes=True), replaced=replaced
    )


def query_ask_from_proto(msg: gateway_pb2.QueryRequest) -> QueryAsk:
    return QueryAsk(
        sql=msg.sql,
        purpose=msg.purpose,
        nodes=tuple(msg.nodes),
        explain=msg.explain,
        allow_partial=msg.allow_partial,
    )


def audit_chunk(text: str) -> gateway_pb2.AuditChunk:
    return gateway_pb2.AuditChunk(data=text.encode())


def audit_show_response(entries: list[str]) -> gateway_pb2.AuditShowResponse:
    return gateway_pb2.AuditShowResponse(entries=entries)


def receipts_response(receipts: list[str], next_after: int = 0) -> gateway_pb2.ReceiptsResponse:
    return gateway_pb2.ReceiptsResponse(receipts=receipts, next=next_after)


# --- requests between nodes --------------------------------------------------------------


def requester_to_proto(r: Requester) -> common_pb2.Requester:
    return common_pb2.Requester(role=r.role, id=r.id, org=r.org)


def requester_from_proto(msg: common_pb2.Requester) -> Requester:
    return Requester(role=msg.role, id=msg.id, org=msg.org)


def envelope_to_proto(env: Envelope, operation: str = "query") -> peer_pb2.PartialRequest:
    """An envelope on the wire; the RPC that carries it says its ``operation``
    (``Peer/Execute`` queries, ``Peer/PsiRun`` and ``Peer/PsiExchange`` PSI)."""
    if env.operation != operation:
        raise ValueError(f"this call carries {operation!r}, not {env.operation!r}")
    return peer_pb2.PartialRequest(
        request_id=env.request_id,
        sql=env.body,
        requester=requester_to_proto(env.requester),
        home_node=env.home_node,
        purpose=env.purpose,
        include_children=env.include_children,
        explain=env.explain,
        check=env.check,
        path=list(env.path),
        home_cert=env.home_cert,
        home_signature=env.signature,
        issued_at=env.issued_at,
    )


# An envelope's names, bounded before anything is decided or audited: a home makes a
# 32-hex request id, node ids and certificate names are short; a peer sending megabytes
# in them would otherwise write megabytes into every refusal's audit entry (review).
MAX_ENVELOPE_NAME = 256
MAX_PATH_HOPS = 16


def envelope_from_proto(
    msg: peer_pb2.PartialRequest, deadline: float, operation: str = "query"
) -> Envelope:
    """``operation`` comes from the RPC that carried the envelope (the home signed it)."""
    r = msg.requester
    names = {
        "request id": msg.request_id,
        "home node": msg.home_node,
        "requester role": r.role,
        "requester id": r.id,
        "requester organisation": r.org,
    }
    for what, text in names.items():
        if len(text) > MAX_ENVELOPE_NAME:
            raise InvalidArgument(f"an envelope's {what} is longer than {MAX_ENVELOPE_NAME}")
    if len(msg.issued_at) > MAX_ENVELOPE_NAME:
        raise InvalidArgument(f"an envelope's signing time is longer than {MAX_ENVELOPE_NAME}")
    if len(msg.path) > MAX_PATH_HOPS or any(len(p) > MAX_ENVELOPE_NAME for p in msg.path):
        raise InvalidArgument(f"an envelope's path is longer than {MAX_PATH_HOPS} node ids")
    check_purpose(msg.purpose)
    return Envelope(
        request_id=msg.request_id,
        requester=requester_from_proto(msg.requester),
        home_node=msg.home_node,
        operation=operation,
        body=msg.sql,
        purpose=msg.purpose,
        explain=msg.explain,
        check=msg.check,
        include_children=msg.include_children,
        path=tuple(msg.path),
        home_cert=msg.home_cert,
        signature=msg.home_signature,
        issued_at=msg.issued_at,
        deadline=deadline,
    )


# --- what owners report -----------------------------------------------------------------


def explanation_to_proto(e: Explanation) -> common_pb2.Explanation:
    msg = common_pb2.Explanation(
        grant_id=e.grant_id,
        level=e.level,
        min_group_size=e.min_group_size,
        epsilon=e.epsilon,
        columns=[
            common_pb2.ColumnRoles(column=c, roles=list(r)) for c, r in sorted(e.columns.items())
        ],
        l2_noise=e.l2_noise,
    )
    if e.budget_left is not None:
        msg.budget_left = e.budget_left
    return msg


def explanation_from_proto(msg: common_pb2.Explanation) -> Explanation:
    return Explanation(
        grant_id=msg.grant_id,
        level=msg.level,
        min_group_size=msg.min_group_size,
        epsilon=msg.epsilon,
        columns={c.column: tuple(c.roles) for c in msg.columns},
        budget_left=msg.budget_left if msg.HasField("budget_left") else None,
        l2_noise=msg.l2_noise,
    )


def owner_report_to_proto(r: OwnerReport) -> common_pb2.OwnerResult:
    msg = common_pb2.OwnerResult(
        node_id=r.node_id,
        ok=r.ok,
        groups_released=r.groups_released,
        l2_noise=r.l2_noise,
        epsilon=r.epsilon,
        grant_id=r.grant_id,
        receipt=r.receipt,
        via=r.via,
        no_spend=r.no_spend,
    )
    if r.error is not None:
        msg.error, msg.error_code = r.error.reason, r.error.code.name
    if r.explanation is not None:
        msg.explanation.CopyFrom(explanation_to_proto(r.explanation))
    return msg


# What a report from a peer may hold: a reason as long as a status message, a receipt (about
# 1.5 KB; at most ~6 KB with a 500-character purpose in CJK, escaped, and a certificate's
# names) well under this; more is cut (a cut receipt no longer parses, and the home names
# its owner under ``bad_receipts``). A 4 MB reason went whole into the home's audit log on
# every query (review, 2026-12-04); the home keeps every receipt, so an owner padding its
# own could grow that table 40 times faster at 64 KiB (review, later that day).
REPORT_REASON_CHARS = 1000
REPORT_RECEIPT_CHARS = 16 * 1024


def owner_report_from_proto(msg: common_pb2.OwnerResult) -> OwnerReport:
    error = None
    if not msg.ok:
        reason = cut(msg.error, REPORT_REASON_CHARS)
        error = failure(msg.error_code, reason, Code.UNAVAILABLE)
    return OwnerReport(
        node_id=cut(msg.node_id, MAX_ENVELOPE_NAME),
        error=error,
        groups_released=msg.groups_released,
        l2_noise=msg.l2_noise,
        epsilon=msg.epsilon,
        grant_id=cut(msg.grant_id, MAX_ENVELOPE_NAME),
        receipt=msg.receipt[:REPORT_RECEIPT_CHARS],
        via=cut(msg.via, MAX_ENVELOPE_NAME),
        no_spend=msg.no_spend,
        explanation=explanation_from_proto(msg.explanation)
        if msg.HasField("explanation")
        else None,
    )


def partial_answer_to_proto(a: PartialAnswer) -> peer_pb2.PartialResponse:
    return peer_pb2.PartialResponse(
        node_id=a.node_id,
        published=a.published,
        arrow_ipc=a.payload,
        owners=[owner_report_to_proto(o) for o in a.owners],
    )


def partial_answer_from_proto(msg: peer_pb2.PartialResponse) -> PartialAnswer:
    return PartialAnswer(
        node_id=msg.node_id,
        published=msg.published,
        payload=msg.arrow_ipc,
        owners=tuple(owner_report_from_proto(o) for o in msg.owners),
    )


def query_answer_to_proto(a: QueryAnswer) -> gateway_pb2.QueryResponse:
    return gateway_pb2.QueryResponse(
        request_id=a.request_id,
        arrow_ipc=a.payload,
        owners=[owner_report_to_proto(o) for o in a.owners],
        missing=list(a.missing),
        epsilon_spent=a.epsilon_spent,
        plan=a.plan_sql,
        plan_digest=a.plan_digest,
    )


def health_check_request() -> health_pb2.HealthCheckRequest:
    return health_pb2.HealthCheckRequest()


# --- the client's requests (gateway.client) ---------------------------------------------


def whoami_request() -> gateway_pb2.WhoAmIRequest:
    return gateway_pb2.WhoAmIRequest()


def federated_catalog_request(
    name_contains: str, member_timeout: float
) -> gateway_pb2.FederatedCatalogRequest:
    return gateway_pb2.FederatedCatalogRequest(
        name_contains=name_contains, timeout_seconds=member_timeout
    )


def query_request(ask: QueryAsk) -> gateway_pb2.QueryRequest:
    return gateway_pb2.QueryRequest(
        sql=ask.sql,
        purpose=ask.purpose,
        allow_partial=ask.allow_partial,
        nodes=list(ask.nodes),
        explain=ask.explain,
    )


def add_grant_request(grant: Grant) -> gateway_pb2.AddGrantRequest:
    return gateway_pb2.AddGrantRequest(grant=grant_to_proto(grant, ""))


def access_status_query(owner: str, request_id: str) -> gateway_pb2.AccessRequestStatusRequest:
    return gateway_pb2.AccessRequestStatusRequest(owner=owner, id=request_id)


def list_grants_request(dataset: str) -> gateway_pb2.ListGrantsRequest:
    return gateway_pb2.ListGrantsRequest(dataset=dataset)


def revoke_grant_request(grant_id: str) -> gateway_pb2.RevokeGrantRequest:
    return gateway_pb2.RevokeGrantRequest(id=grant_id)


def approve_app_request(name: str, bundle: AppBundle) -> gateway_pb2.ApproveAppRequest:
    files = [gateway_pb2.AppFile(path=p, data=d) for p, d in bundle.files]
    return gateway_pb2.ApproveAppRequest(name=name, files=files)


def app_bundle_from_proto(msg: gateway_pb2.ApproveAppRequest) -> AppBundle:
    try:
        return app_bundle.bundle([(f.path, f.data) for f in msg.files])
    except TrainingError as exc:
        raise InvalidArgument(exc.reason) from None


def app_info_to_proto(app: ApprovedApp) -> gateway_pb2.AppInfo:
    return gateway_pb2.AppInfo(
        digest=app.digest,
        name=app.name,
        approved_by=app.approved_by,
        approved_at=app.approved_at,
        files=app.files,
        size=app.size,
    )


def app_info_from_proto(msg: gateway_pb2.AppInfo) -> ApprovedApp:
    return ApprovedApp(msg.digest, msg.name, msg.approved_by, msg.approved_at, msg.files, msg.size)


def list_apps_request() -> gateway_pb2.ListAppsRequest:
    return gateway_pb2.ListAppsRequest()


def list_apps_response(apps: Iterable[ApprovedApp]) -> gateway_pb2.ListAppsResponse:
    return gateway_pb2.ListAppsResponse(apps=[app_info_to_proto(a) for a in apps])


def revoke_app_request(digest: str) -> gateway_pb2.RevokeAppRequest:
    return gateway_pb2.RevokeAppRequest(digest=digest)


def audit_export_request() -> gateway_pb2.AuditExportRequest:
    return gateway_pb2.AuditExportRequest()


def audit_show_request(request_id: str) -> gateway_pb2.AuditShowRequest:
    return gateway_pb2.AuditShowRequest(request_id=request_id)


def receipts_request(request_id: str, after: int = 0) -> gateway_pb2.ReceiptsRequest:
    return gateway_pb2.ReceiptsRequest(request_id=request_id, after=after)


def witness_now_request() -> gateway_pb2.WitnessNowRequest:
    return gateway_pb2.WitnessNowRequest()


def witnessed_heads_request(node: str, after: int = 0) -> gateway_pb2.WitnessedHeadsRequest:
    return gateway_pb2.WitnessedHeadsRequest(node=node, after_size=after)


def list_access_requests_request(
    state: str, after: int = 0
) -> gateway_pb2.ListAccessRequestsRequest:
    return gateway_pb2.ListAccessRequestsRequest(state=state, after=after)


def disclosure_request(node: str, since: str, until: str) -> gateway_pb2.DisclosureRequest:
    return gateway_pb2.DisclosureRequest(node=node, since=since, until=until)


def register_request(desc: DatasetDescriptor) -> gateway_pb2.RegisterDatasetRequest:
    return gateway_pb2.RegisterDatasetRequest(dataset=descriptor_to_proto(desc))


def grants_response(grants: Sequence[tuple[Grant, str]]) -> gateway_pb2.ListGrantsResponse:
    return gateway_pb2.ListGrantsResponse(grants=[grant_to_proto(g, st) for g, st in grants])


# --- access requests and disclosure, forwarded between nodes ------------------------------


def forwarded_status_request(
    owner: str, request_id: str, requester: Requester
) -> peer_pb2.ForwardedStatusRequest:
    """A status request as the home forwards it, vouching for its user."""
    return peer_pb2.ForwardedStatusRequest(
        request=access_status_query(owner, request_id), requester=requester_to_proto(requester)
    )


# --- witnessing --------------------------------------------------------------------------


def signed_head_to_proto(h: SignedHead) -> common_pb2.SignedHead:
    return common_pb2.SignedHead(
        node=h.node, size=h.size, head=h.head, time=h.time, signature=h.signature
    )


def signed_head_from_proto(msg: common_pb2.SignedHead) -> SignedHead:
    return SignedHead(
        node=msg.node, size=msg.size, head=msg.head, time=msg.time, signature=msg.signature
    )


def witnessed_head_to_proto(w: WitnessedHead) -> common_pb2.WitnessedHead:
    return common_pb2.WitnessedHead(
        witness=w.witness,
        node=w.node,
        size=w.size,
        head=w.head,
        time=w.time,
        countersignature=w.countersignature,
        witness_cert=w.witness_cert,
    )


def witnessed_head_from_proto(msg: common_pb2.WitnessedHead) -> WitnessedHead:
    return WitnessedHead(
        witness=msg.witness,
        node=msg.node,
        size=msg.size,
        head=msg.head,
        time=msg.time,
        countersignature=msg.countersignature,
        witness_cert=msg.witness_cert,
    )


def witness_request_to_proto(req: WitnessRequest) -> peer_pb2.WitnessRequest:
    return peer_pb2.WitnessRequest(
        head=signed_head_to_proto(req.head), from_size=req.from_size, digests=req.digests
    )


def witness_request_from_proto(msg: peer_pb2.WitnessRequest) -> WitnessRequest:
    return WitnessRequest(
        head=signed_head_from_proto(msg.head), from_size=msg.from_size, digests=tuple(msg.digests)
    )


def witness_now_response(result: WitnessRound) -> gateway_pb2.WitnessNowResponse:
    """A witness round's answer; each failure as the text "peer: CODE: reason"."""
    return gateway_pb2.WitnessNowResponse(
        countersigned=[witnessed_head_to_proto(w) for w in result.heads],
        errors=[str(f) for f in result.errors],
    )


def witnessed_heads_response(heads: Iterable[WitnessedHead]) -> gateway_pb2.WitnessedHeadsResponse:
    return gateway_pb2.WitnessedHeadsResponse(heads=[witnessed_head_to_proto(w) for w in heads])


# --- access requests and disclosure ------------------------------------------------------


def column_controls_to_proto(c: ColumnControls) -> common_pb2.ColumnControls:
    return common_pb2.ColumnControls(column=c.column, controls=list(c.controls))


def column_controls_from_proto(msg: common_pb2.ColumnControls) -> ColumnControls:
    return ColumnControls(column=msg.column, controls=tuple(msg.controls))


def access_request_to_proto(r: AccessRequest) -> common_pb2.AccessRequest:
    return common_pb2.AccessRequest(
        id=r.id,
        owner=r.owner,
        dataset=r.dataset,
        requester=requester_to_proto(r.requester),
        home_node=r.home_node,
        columns=[column_controls_to_proto(c) for c in r.columns],
        operations=list(r.operations),
        purpose=r.purpose,
        valid_from=r.valid_from,
        expires=r.expires,
        state=r.state,
        decided_by=r.decided_by,
        decision_note=r.decision_note,
        grant_id=r.grant_id,
        submitted_at=r.submitted_at,
        decided_at=r.decided_at,
    )


def access_request_from_proto(msg: common_pb2.AccessRequest) -> AccessRequest:
    return AccessRequest(
        id=msg.id,
        owner=msg.owner,
        dataset=msg.dataset,
        requester=requester_from_proto(msg.requester),
        home_node=msg.home_node,
        columns=tuple(column_controls_from_proto(c) for c in msg.columns),
        operations=tuple(msg.operations),
        purpose=msg.purpose,
        valid_from=msg.valid_from,
        expires=msg.expires,
        state=msg.state,
        decided_by=msg.decided_by,
        decision_note=msg.decision_note,
        grant_id=msg.grant_id,
        submitted_at=msg.submitted_at,
        decided_at=msg.decided_at,
    )


def list_access_requests_response(
    requests: Iterable[AccessRequest], next_after: int = 0
) -> gateway_pb2.ListAccessRequestsResponse:
    return gateway_pb2.ListAccessRequestsResponse(
        requests=[access_request_to_proto(r) for r in requests], next=next_after
    )


def access_decision_to_proto(d: AccessDecision) -> gateway_pb2.DecideAccessRequestRequest:
    return gateway_pb2.DecideAccessRequestRequest(
        id=d.id,
        approve=d.approve,
        note=d.note,
        columns=[column_controls_to_proto(c) for c in d.columns],
        expires=d.expires,
        min_group_size=d.min_group_size,
        dp_epsilon=d.dp_epsilon,
        dp_budget=d.dp_budget,
        max_uses=d.max_uses,
        train_tasks=list(d.train_tasks),
        max_rounds=d.max_rounds,
    )


def access_decision_from_proto(msg: gateway_pb2.DecideAccessRequestRequest) -> AccessDecision:
    return AccessDecision(
        id=msg.id,
        approve=msg.approve,
        note=msg.note,
        columns=tuple(column_controls_from_proto(c) for c in msg.columns),
        expires=msg.expires,
        min_group_size=msg.min_group_size,
        dp_epsilon=msg.dp_epsilon,
        dp_budget=msg.dp_budget,
        max_uses=msg.max_uses,
        train_tasks=tuple(msg.train_tasks),
        max_rounds=msg.max_rounds,
    )


def disclosure_report_to_proto(r: DisclosureReport) -> gateway_pb2.DisclosureReport:
    return gateway_pb2.DisclosureReport(
        node=r.node,
        org=r.org,
        generated_at=r.generated_at,
        since=r.since,
        until=r.until,
        grants=[
            gateway_pb2.DisclosedGrant(
                id=g.id,
                grantee_org=g.grantee_org,
                grantee_kind=g.grantee_kind,
                dataset=g.dataset,
                columns=[
                    common_pb2.ColumnControls(column=c, controls=list(v)) for c, v in g.columns
                ],
                operations=list(g.operations),
                valid_from=g.valid_from,
                expires=g.expires,
                purpose=g.purpose,
                status=g.status,
                exact=g.exact,
            )
            for g in r.grants
        ],
        usage=[
            gateway_pb2.DisclosedUsage(
                dataset=u.dataset,
                grantee_org=u.grantee_org,
                requests=u.requests,
                releases=u.releases,
                refusals=u.refusals,
                epsilon_spent=u.epsilon_spent,
            )
            for u in r.usage
        ],
    )


def disclosure_report_from_proto(msg: gateway_pb2.DisclosureReport) -> DisclosureReport:
    return DisclosureReport(
        node=msg.node,
        org=msg.org,
        generated_at=msg.generated_at,
        since=msg.since,
        until=msg.until,
        grants=tuple(
            DisclosedGrant(
                id=g.id,
                grantee_org=g.grantee_org,
                grantee_kind=g.grantee_kind,
                dataset=g.dataset,
                columns=tuple((c.column, tuple(c.controls)) for c in g.columns),
                operations=tuple(g.operations),
                valid_from=g.valid_from,
                expires=g.expires,
                purpose=g.purpose,
                status=g.status,
                exact=g.exact,
            )
            for g in msg.grants
        ),
        usage=tuple(
            DisclosedUsage(
                dataset=u.dataset,
                grantee_org=u.grantee_org,
                requests=u.requests,
                releases=u.releases,
                refusals=u.refusals,
                epsilon_spent=u.epsilon_spent,
            )
            for u in msg.usage
        ),
    )


# --- private set intersection ----------------------------------------------------------


def psi_frame_to_proto(f: psi.Frame) -> peer_pb2.PsiFrame:
    if isinstance(f, psi.Points):
        return peer_pb2.PsiFrame(
            points=peer_pb2.PsiPoints(
                kind=f.kind, seq=f.seq, points=f.points, tags=f.tags, values=f.values
            )
        )
    if isinstance(f, psi.Hello):
        hello = peer_pb2.PsiHello(
            set_size=f.set_size,
            min_group_size=f.min_group_size,
            version=f.version,
            max_batch=f.max_batch,
            paillier_key=f.paillier_key,
            value_kinds=list(f.value_kinds),
            epsilon=f.epsilon,
        )
        if f.envelope is not None:
            hello.envelope.CopyFrom(envelope_to_proto(f.envelope, f.envelope.operation))
        return peer_pb2.PsiFrame(hello=hello)
    if isinstance(f, psi.Done):
        return peer_pb2.PsiFrame(done=peer_pb2.PsiDone(kind=f.kind))
    if isinstance(f, psi.Tally):
        return peer_pb2.PsiFrame(
            tally=peer_pb2.PsiTally(
                intersection=f.intersection,
                min_group_size=f.min_group_size,
                group_sizes=list(f.group_sizes),
            )
        )
    if isinstance(f, psi.Sums):
        return peer_pb2.PsiFrame(
            sums=peer_pb2.PsiSums(ciphertexts=list(f.ciphertexts), counts=list(f.counts))
        )
    if isinstance(f, psi.Opened):
        return peer_pb2.PsiFrame(
            opened=peer_pb2.PsiOpened(values=[_int_bytes(v) for v in f.values])
        )
    return peer_pb2.PsiFrame(release=owner_report_to_proto(f.report))


def psi_frame_from_proto(
    msg: peer_pb2.PsiFrame, deadline: float, operation: str = "psi"
) -> psi.Frame:
    """A received frame as its record; a frame with nothing set is INVALID_ARGUMENT."""
    which = msg.WhichOneof("frame")
    if which == "points":
        p = msg.points
        return psi.Points(kind=p.kind, seq=p.seq, points=p.points, tags=p.tags, values=p.values)
    if which == "hello":
        h = msg.hello
        env = (
            envelope_from_proto(h.envelope, deadline, operation) if h.HasField("envelope") else None
        )
        return psi.Hello(
            set_size=h.set_size,
            min_group_size=h.min_group_size,
            max_batch=h.max_batch,
            version=h.version,
            envelope=env,
            paillier_key=h.paillier_key,
            value_kinds=tuple(h.value_kinds),
            epsilon=h.epsilon,
        )
    if which == "done":
        return psi.Done(kind=msg.done.kind)
    if which == "tally":
        t = msg.tally
        return psi.Tally(t.intersection, t.min_group_size, tuple(t.group_sizes))
    if which == "sums":
        return psi.Sums(tuple(msg.sums.ciphertexts), tuple(msg.sums.counts))
    if which == "opened":
        return psi.Opened(tuple(_int_from_bytes(b) for b in msg.opened.values))
    if which == "release":
        return psi.Release(owner_report_from_proto(msg.release))
    raise InvalidArgument("an empty PSI frame")


MAX_INT_BYTES = 1024  # an opened sum: far above any 2048-bit key's plaintext


def _int_bytes(v: int) -> bytes:
    return v.to_bytes((v.bit_length() + 8) // 8 or 1, "big", signed=True)


def _int_from_bytes(b: bytes) -> int:
    if not b or len(b) > MAX_INT_BYTES:
        raise InvalidArgument("an opened sum is not an integer of at most 1024 bytes")
    return int.from_bytes(b, "big", signed=True)


def psi_run_request(env: Envelope) -> peer_pb2.PsiRunRequest:
    return peer_pb2.PsiRunRequest(envelope=envelope_to_proto(env, "psi"))


def psi_ask_from_proto(msg: gateway_pb2.PsiRequest) -> PsiAsk:
    def side(s: gateway_pb2.PsiSide) -> PsiSideAsk:
        return PsiSideAsk(s.node, s.dataset, s.column, s.where)

    return PsiAsk(side(msg.left), side(msg.right), msg.purpose, msg.explain)


def psi_request(ask: PsiAsk) -> gateway_pb2.PsiRequest:
    def side(s: PsiSideAsk) -> gateway_pb2.PsiSide:
        return gateway_pb2.PsiSide(node=s.node, dataset=s.dataset, column=s.column, where=s.where)

    return gateway_pb2.PsiRequest(
        left=side(ask.left), right=side(ask.right), purpose=ask.purpose, explain=ask.explain
    )


def psi_event_to_proto(e: psi.Event) -> gateway_pb2.PsiEvent:
    if isinstance(e, psi.Progress):
        return gateway_pb2.PsiEvent(
            progress=gateway_pb2.PsiProgress(
                node_id=e.node_id, stage=e.stage, done=e.done, total=e.total
            )
        )
    return gateway_pb2.PsiEvent(
        result=gateway_pb2.PsiResult(
            request_id=e.request_id,
            intersection=e.intersection,
            suppressed=e.suppressed,
            min_group_size=e.min_group_size,
            owners=[owner_report_to_proto(o) for o in e.owners],
            learns=[gateway_pb2.PsiLearns(party=p, learns=t) for p, t in e.learns],
            arrow_ipc=e.payload,
            epsilon_spent=e.epsilon_spent,
        )
    )


def psi_event_from_proto(msg: gateway_pb2.PsiEvent) -> psi.Event:
    if msg.WhichOneof("event") == "progress":
        p = msg.progress
        return psi.Progress(p.node_id, p.stage, p.done, p.total)
    r = msg.result
    return psi.PsiAnswer(
        request_id=r.request_id,
        intersection=r.intersection,
        suppressed=r.suppressed,
        min_group_size=r.min_group_size,
        owners=tuple(owner_report_from_proto(o) for o in r.owners),
        learns=tuple((x.party, x.learns) for x in r.learns),
        payload=r.arrow_ipc,
        epsilon_spent=r.epsilon_spent,
    )


# --- training ---------------------------------------------------------------------------


def train_request(ask: TrainAsk) -> gateway_pb2.TrainRequest:
    spec = ask.spec
    return gateway_pb2.TrainRequest(
        task=spec.task,
        dataset=spec.dataset,
        features=list(spec.features),
        label=spec.label,
        rounds=spec.rounds,
        strategy=spec.strategy,
        nodes=list(ask.nodes),
        min_nodes=spec.min_nodes,
        seed=spec.seed,
        purpose=ask.purpose,
        learning_rate=spec.learning_rate,
        local_epochs=spec.local_epochs,
        classes=spec.n_classes,
        dp_clip=spec.dp_clip,
        secagg=spec.secagg,
        dp_noise=spec.dp_noise,
    )


def train_ask_from_proto(msg: gateway_pb2.TrainRequest) -> TrainAsk:
    spec = TrainSpec(
        task=msg.task,
        dataset=msg.dataset,
        features=tuple(msg.features),
        label=msg.label,
        rounds=msg.rounds,
        strategy=msg.strategy or "fedavg",
        min_nodes=msg.min_nodes,
        seed=msg.seed,
        learning_rate=msg.learning_rate,
        local_epochs=msg.local_epochs,
        n_classes=msg.classes,
        dp_clip=msg.dp_clip,
        secagg=msg.secagg,
        dp_noise=msg.dp_noise,
    )
    return TrainAsk(spec, tuple(msg.nodes), msg.purpose)


def _train_round_to_proto(r: TrainRound) -> gateway_pb2.TrainRound:
    return gateway_pb2.TrainRound(
        round=r.round,
        rounds=r.rounds,
        nodes_answered=r.answered,
        train_loss=r.train_loss,
        eval_loss=r.eval_loss,
        eval_accuracy=r.eval_accuracy,
        elapsed_seconds=r.elapsed,
    )


def _train_round_from_proto(m: gateway_pb2.TrainRound) -> TrainRound:
    return TrainRound(
        m.round,
        m.rounds,
        m.nodes_answered,
        m.train_loss,
        m.eval_loss,
        m.eval_accuracy,
        m.elapsed_seconds,
    )


def train_events_to_proto(e: TrainEvent) -> list[gateway_pb2.TrainEvent]:
    """An event as the messages that carry it: a model larger than one message goes
    first, in pieces (``ModelPiece``), and so do owner reports that would not fit with it
    (``OwnerBatch``, each under ``PIECE_BYTES``); the result then holds none of them."""
    if not isinstance(e, TrainResult):
        return [train_event_to_proto(e)]
    out: list[gateway_pb2.TrainEvent] = []
    if len(e.model_npz) > PIECE_BYTES:
        out += [train_event_to_proto(ModelPiece(p)) for _, p in pieces(e.model_npz)]
        e = dataclasses.replace(e, model_npz=b"")
    if sum(_report_bytes(o) for o in e.owners) > PIECE_BYTES // 2:
        batch: list[OwnerReport] = []
        size = 0
        for o in e.owners:
            if batch and size + _report_bytes(o) > PIECE_BYTES // 2:
                out.append(train_event_to_proto(OwnerBatch(tuple(batch))))
                batch, size = [], 0
            batch.append(o)
            size += _report_bytes(o)
        out.append(train_event_to_proto(OwnerBatch(tuple(batch))))
        e = dataclasses.replace(e, owners=())
    return [*out, train_event_to_proto(e)]


def _report_bytes(o: OwnerReport) -> int:
    return len(o.receipt) + len(o.error.reason if o.error else "") + 256


def train_event_to_proto(e: TrainEvent) -> gateway_pb2.TrainEvent:
    if isinstance(e, TrainRound):
        return gateway_pb2.TrainEvent(round=_train_round_to_proto(e))
    if isinstance(e, ModelPiece):
        return gateway_pb2.TrainEvent(model_piece=e.data)
    if isinstance(e, OwnerBatch):
        reports = [owner_report_to_proto(o) for o in e.owners]
        return gateway_pb2.TrainEvent(owners=gateway_pb2.OwnerResults(owners=reports))
    return gateway_pb2.TrainEvent(
        result=gateway_pb2.TrainResult(
            run_id=e.run_id,
            model_npz=e.model_npz,
            rounds=[_train_round_to_proto(r) for r in e.rounds],
            owners=[owner_report_to_proto(o) for o in e.owners],
            task=e.task,
            features=list(e.features),
            label=e.label,
            mean=list(e.mean),
            std=list(e.std),
            dp_epsilon=e.dp_epsilon,
            dp_delta=e.dp_delta,
        )
    )


def train_event_from_proto(msg: gateway_pb2.TrainEvent) -> TrainEvent:
    if msg.WhichOneof("event") == "round":
        return _train_round_from_proto(msg.round)
    if msg.WhichOneof("event") == "model_piece":
        return ModelPiece(bytes(msg.model_piece))
    if msg.WhichOneof("event") == "owners":
        return OwnerBatch(tuple(owner_report_from_proto(o) for o in msg.owners.owners))
    r = msg.result
    return TrainResult(
        run_id=r.run_id,
        model_npz=bytes(r.model_npz),
        rounds=tuple(_train_round_from_proto(x) for x in r.rounds),
        owners=tuple(owner_report_from_proto(o) for o in r.owners),
        task=r.task,
        features=tuple(r.features),
        label=r.label,
        mean=tuple(r.mean),
        std=tuple(r.std),
        dp_epsilon=r.dp_epsilon,
        dp_delta=r.dp_delta,
    )


def train_step_request(env: Envelope, piece: Piece) -> peer_pb2.TrainStepRequest:
    return peer_pb2.TrainStepRequest(
        envelope=envelope_to_proto(env, "train"),
        message=piece.data,
        total=piece.total,
        offset=piece.offset,
        fetch=piece.fetch,
        transfer=piece.transfer,
    )


def piece_of(msg: peer_pb2.TrainStepRequest) -> Piece:
    if msg.total < 0 or msg.offset < 0 or msg.fetch < 0 or len(msg.transfer) > 64:
        raise InvalidArgument("a training step's sizes are not sizes")
    return Piece(bytes(msg.message), msg.transfer, msg.total, msg.offset, msg.fetch)


def train_step_response(answer: Answer) -> peer_pb2.TrainStepResponse:
    resp = peer_pb2.TrainStepResponse(message=answer.data, total=answer.total, offset=answer.offset)
    if answer.report is not None:
        resp.owner.CopyFrom(owner_report_to_proto(answer.report))
    return resp


def train_step_answer(msg: peer_pb2.TrainStepResponse) -> Answer:
    report = owner_report_from_proto(msg.owner) if msg.HasField("owner") else None
    return Answer(bytes(msg.message), report, msg.total, msg.offset)


def train_run_status(r: RunStatus) -> gateway_pb2.TrainRunStatus:
    return gateway_pb2.TrainRunStatus(
        run_id=r.run_id,
        requester=r.requester,
        org=r.org,
        dataset=r.dataset,
        task=r.task,
        rounds=r.rounds,
        started=r.started,
        state=r.state,
        round=r.round,
        train_loss=r.train_loss,
        eval_accuracy=r.eval_accuracy,
        reason=r.reason,
    )


def train_run_status_from_proto(m: gateway_pb2.TrainRunStatus) -> RunStatus:
    return RunStatus(
        m.run_id, m.requester, m.org, m.dataset, m.task, m.rounds, m.started, m.state, m.round,
        m.train_loss, m.eval_accuracy, m.reason,
    )  # fmt: skip


def train_runs_response(runs: Sequence[RunStatus]) -> gateway_pb2.TrainRunsResponse:
    return gateway_pb2.TrainRunsResponse(runs=[train_run_status(r) for r in runs])


def train_runs_request(run_id: str) -> gateway_pb2.TrainRunsRequest:
    return gateway_pb2.TrainRunsRequest(run_id=run_id)


def train_cancel_request(run_id: str) -> gateway_pb2.TrainCancelRequest:
    return gateway_pb2.TrainCancelRequest(run_id=run_id)
