"""The public disclosure report: who may use what, for what, until when, and how much was used.

Built from the node's grants and its audit log. It names organisations and nodes, never
persons (a user grantee is shown by the organisation part of its id), and it contains no
data values: only counts of requests, releases and refusals, and epsilon spent.
"""

from __future__ import annotations

import html
import json

from google.protobuf import json_format

from gateway.audit import AuditLog
from gateway.clock import utc
from gateway.policy import GrantStore
from gateway.rpc.v1 import common_pb2, gateway_pb2


def grantee_org(kind: str, grantee: str, org: str = "") -> str:
    if kind == "user":
        return "a user at " + (org or grantee.partition("@")[2])
    return grantee


def build(
    node: str,
    org: str,
    grants: GrantStore,
    audit: AuditLog,
    since: str,
    until: str,
    hidden: frozenset[str] | set[str] = frozenset(),
) -> gateway_pb2.DisclosureReport:
    """``hidden``: datasets (L4) whose very name is not disclosed."""
    now = utc()
    report = gateway_pb2.DisclosureReport(
        node=node, org=org, generated_at=now, since=since, until=until
    )
    for g in grants.list():
        if g.dataset in hidden:
            continue
        report.grants.add(
            id=g.id,
            grantee_org=grantee_org(g.grantee_kind, g.grantee, g.grantee_org),
            grantee_kind=g.grantee_kind,
            dataset=g.dataset,
            columns=[
                common_pb2.ColumnControls(column=c, controls=list(v)) for c, v in g.columns.items()
            ],
            operations=list(g.operations),
            valid_from=g.valid_from,
            expires=g.expires,
            purpose=g.purpose,
            status=g.status(now),
        )
    usage: dict[tuple[str, str], dict[str, float]] = {}
    after = 0
    while True:
        batch = audit.entries(after, 20_000)
        if not batch:
            break
        for e in batch:
            body = e.data
            kind = body.get("kind")
            if kind not in ("release", "query.refused") or body.get("dry_run"):
                continue
            if body.get("dataset") in hidden:
                continue
            t = body.get("time", "")
            if (since and t < since) or (until and t > until):
                continue
            key = (body.get("dataset", ""), body.get("requester_org", ""))
            u = usage.setdefault(key, {"requests": 0, "releases": 0, "refusals": 0, "eps": 0.0})
            u["requests"] += 1
            if kind == "release":
                u["releases"] += 1
                u["eps"] += float(body.get("epsilon", 0.0))
            else:
                u["refusals"] += 1
        after = batch[-1].seq
    for (dataset, org_name), u in sorted(usage.items()):
        report.usage.add(
            dataset=dataset,
            grantee_org=org_name,
            requests=int(u["requests"]),
            releases=int(u["releases"]),
            refusals=int(u["refusals"]),
            epsilon_spent=u["eps"],
        )
    return report


def _grant_rows(r: gateway_pb2.DisclosureReport) -> list[list[str]]:
    return [
        [
            g.grantee_org,
            g.dataset,
            "; ".join(f"{c.column}: {', '.join(c.controls)}" for c in g.columns),
            ", ".join(g.operations),
            f"{g.valid_from or '-'} to {g.expires or 'no expiry'}",
            g.purpose or "-",
            g.status,
        ]
        for g in r.grants
    ]


def _usage_rows(r: gateway_pb2.DisclosureReport) -> list[list[str]]:
    return [
        [
            u.dataset,
            u.grantee_org,
            str(u.requests),
            str(u.releases),
            str(u.refusals),
            f"{u.epsilon_spent:g}",
        ]
        for u in r.usage
    ]


GRANT_HEADERS = ["grantee", "dataset", "columns", "operations", "period", "purpose", "status"]
USAGE_HEADERS = ["dataset", "grantee", "requests", "releases", "refusals", "epsilon spent"]


def to_json(r: gateway_pb2.DisclosureReport) -> str:
    return json.dumps(
        json_format.MessageToDict(r, preserving_proto_field_name=True), indent=2, ensure_ascii=False
    )


def to_markdown(r: gateway_pb2.DisclosureReport) -> str:
    def table(headers: list[str], rows: list[list[str]]) -> list[str]:
        out = ["| " + " | ".join(headers) + " |", "|" + " --- |" * len(headers)]
        out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
        return out

    period = f"{r.since or 'the start'} to {r.until or r.generated_at}"
    lines = [
        f"# Data-sharing disclosure: {r.org} (node {r.node})",
        "",
        f"Generated {r.generated_at}. Usage period: {period}.",
        "",
        "## Grants",
        "",
    ]
    lines += table(GRANT_HEADERS, _grant_rows(r)) + ["", "## Usage", ""]
    lines += table(USAGE_HEADERS, _usage_rows(r))
    return "\n".join(lines) + "\n"


def to_html(r: gateway_pb2.DisclosureReport) -> str:
    def table(headers: list[str], rows: list[list[str]]) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    title = html.escape(f"Data-sharing disclosure: {r.org} (node {r.node})")
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title></head>"
        f"<body><h1>{title}</h1><p>Generated {html.escape(r.generated_at)}.</p>"
        f"<h2>Grants</h2>{table(GRANT_HEADERS, _grant_rows(r))}"
        f"<h2>Usage</h2>{table(USAGE_HEADERS, _usage_rows(r))}</body></html>\n"
    )
