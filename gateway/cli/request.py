"""``fedgate request``: access requests (场景评审), asked by analysts, decided by operators."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from gateway.cli.common import (
    INT32,
    Subparsers,
    add_command,
    add_group,
    add_train_limits,
    client_options,
    column_controls,
    profile,
    whole,
)
from gateway.errors import FedgateError

if TYPE_CHECKING:
    from gateway.access import AccessRequest, ColumnControls

_REQUEST_HEADERS = [
    "id",
    "owner",
    "dataset",
    "requester",
    "columns",
    "ops",
    "purpose",
    "valid from",
    "expires",
    "state",
    "grant",
]


def _columns(specs: list[str]) -> tuple[ColumnControls, ...]:
    from gateway.access import ColumnControls

    return tuple(ColumnControls(column, controls) for column, controls in column_controls(specs))


def _request_row(r: AccessRequest) -> list[object]:
    cols = "; ".join(f"{c.column}:{'+'.join(c.controls)}" for c in r.columns)
    return [
        r.id,
        r.owner,
        r.dataset,
        # whose: the id alone is a free tag, the same at two organisations
        f"{r.requester.id} ({r.requester.org}, via {r.home_node})",
        cols,
        ",".join(r.operations),
        r.purpose,
        r.valid_from or "-",
        r.expires or "-",
        r.state,
        r.grant_id or "-",
    ]


def cmd_request_submit(args: argparse.Namespace) -> int:
    from gateway import display
    from gateway.access import AccessRequest
    from gateway.client import Client

    owner, sep, dataset = args.dataset.partition(".")
    if not sep:
        raise FedgateError("--dataset must be node.dataset (the owner and its dataset)")
    ask = AccessRequest(
        owner=owner,
        dataset=dataset,
        columns=_columns(args.column),
        operations=tuple(args.ops.split(",")),
        purpose=args.purpose,
        valid_from=args.valid_from,
        expires=args.expires,
    )
    with Client(profile(args)) as c:
        r = c.submit_access_request(ask)
    print(display.table(_REQUEST_HEADERS, [_request_row(r)]))
    return 0


def cmd_request_status(args: argparse.Namespace) -> int:
    from gateway import display
    from gateway.client import Client

    with Client(profile(args)) as c:
        r = c.access_request_status(args.owner, args.id)
    print(display.table(_REQUEST_HEADERS, [_request_row(r)]))
    if r.decision_note:
        print(f"note from {r.decided_by}: {r.decision_note}")
    return 0


def cmd_request_list(args: argparse.Namespace) -> int:
    from gateway import display
    from gateway.client import Client

    with Client(profile(args)) as c:
        listed = c.list_access_requests(args.state)
    rows = [_request_row(r) for r in listed]
    print(display.table(_REQUEST_HEADERS, rows))
    return 0


def cmd_request_decide(args: argparse.Namespace) -> int:
    """``approve`` and ``deny`` both; approving may narrow what was asked."""
    from gateway import display
    from gateway.access import AccessDecision
    from gateway.client import Client

    if args.request_command == "approve":
        decision = AccessDecision(
            id=args.id,
            approve=True,
            note=args.note,
            columns=_columns(args.column),
            expires=args.expires,
            min_group_size=args.min_group_size,
            dp_epsilon=args.dp_epsilon,
            dp_budget=args.dp_budget,
            max_uses=args.max_uses,
            train_tasks=args.train_tasks,
            max_rounds=args.max_rounds,
        )
    else:
        decision = AccessDecision(id=args.id, approve=False, note=args.note)
    with Client(profile(args)) as c:
        r = c.decide_access_request(decision)
    print(display.table(_REQUEST_HEADERS, [_request_row(r)]))
    return 0


def register(sub: Subparsers) -> None:
    req = add_group(sub, "request", "access requests (场景评审)")
    sp = add_command(
        req, "submit", "ask a data owner for access (analysts and operators)", cmd_request_submit
    )
    client_options(sp)
    sp.add_argument("--dataset", required=True, help="owner.dataset, e.g. jiangsu.air_quality")
    sp.add_argument(
        "--column", action="append", default=[], required=True, help="name=control[,control]"
    )
    sp.add_argument("--ops", default="query", help="query,psi,train (default: query)")
    sp.add_argument("--purpose", required=True)
    sp.add_argument("--valid-from", default="")
    sp.add_argument("--expires", default="", help="end of the period asked for (ISO date)")
    sp = add_command(req, "status", "follow your access request", cmd_request_status)
    client_options(sp)
    sp.add_argument("id")
    sp.add_argument("--owner", required=True, help="the owner node")
    sp = add_command(
        req, "list", "access requests for your node's datasets (operators)", cmd_request_list
    )
    client_options(sp)
    sp.add_argument("--state", default="", choices=["", "pending", "approved", "denied"])
    sp = add_command(
        req, "approve", "approve (possibly narrowed); writes the grant", cmd_request_decide
    )
    client_options(sp)
    sp.add_argument("id")
    sp.add_argument("--note", default="")
    sp.add_argument(
        "--column",
        action="append",
        default=[],
        help="narrow to these columns/controls (default: as asked)",
    )
    sp.add_argument("--expires", default="", help="narrow the period (default: as asked)")
    sp.add_argument(
        "--min-group-size", type=whole(0, INT32), default=0, help="default: the level's floor"
    )
    sp.add_argument("--dp-epsilon", type=float, default=0.0)
    sp.add_argument("--dp-budget", type=float, default=0.0)
    sp.add_argument("--max-uses", type=whole(0, INT32), default=0)
    add_train_limits(sp)  # required when the request asks to train: a grant's tasks
    sp = add_command(req, "deny", "deny an access request", cmd_request_decide)
    client_options(sp)
    sp.add_argument("id")
    sp.add_argument("--note", default="")
