"""``fedgate grant``: operators write, list and revoke the grants of their node's datasets."""

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

if TYPE_CHECKING:
    from gateway.rpc.v1 import common_pb2

_GRANT_HEADERS = [
    "id",
    "dataset",
    "grantee",
    "ops",
    "columns",
    "k",
    "epsilon",
    "uses",
    "expires",
    "status",
]


def _grant_row(g: common_pb2.Grant) -> list[object]:
    cols = "; ".join(f"{c.column}:{'+'.join(c.controls)}" for c in g.columns)
    dp = f"{g.epsilon_spent:g}/{g.dp_budget:g} (e={g.dp_epsilon:g})" if g.dp_epsilon else "-"
    if g.exact:
        trains = "; trains without DP" if "train" in g.operations else ""
        dp = f"exact (no L2 noise{trains})"
    uses = f"{g.uses}/{g.max_uses}" if g.max_uses else str(g.uses)
    return [
        g.id,
        g.dataset,
        f"{g.grantee_kind}:{g.grantee}" + (f" ({g.grantee_org})" if g.grantee_org else ""),
        ",".join(g.operations),
        cols,
        g.min_group_size,
        dp,
        uses,
        g.expires or "-",
        g.status,
    ]


def cmd_grant_add(args: argparse.Namespace) -> int:
    from gateway import display
    from gateway.client import Client
    from gateway.policy.model import Grant

    # `--org ""` is a grantee too: the owner refuses it by name ("grantee must not be empty")
    kinds = [
        (k, v)
        for k, v in (("user", args.user), ("org", args.org), ("node", args.node))
        if v is not None
    ]
    kind, grantee = kinds[0]
    grant = Grant(
        id="",
        dataset=args.dataset,
        grantee_kind=kind,
        grantee=grantee,
        operations=tuple(args.ops.split(",")),
        columns=dict(column_controls(args.column)),
        min_group_size=args.min_group_size,
        dp_epsilon=args.dp_epsilon,
        dp_budget=args.dp_budget,
        purpose=args.purpose,
        valid_from=args.valid_from,
        expires=args.expires,
        max_uses=args.max_uses,
        grantee_org=args.user_org,
        exact=args.exact,
        train_tasks=args.train_tasks,
        max_rounds=args.max_rounds,
        max_examples=args.max_examples,
    )
    with Client(profile(args)) as c:
        g = c.add_grant(grant)
    print(display.table(_GRANT_HEADERS, [_grant_row(g)]))
    return 0


def cmd_grant_list(args: argparse.Namespace) -> int:
    from gateway import display
    from gateway.client import Client

    with Client(profile(args)) as c:
        grants = c.list_grants(args.dataset)
    print(display.table(_GRANT_HEADERS, [_grant_row(g) for g in grants]))
    return 0


def cmd_grant_revoke(args: argparse.Namespace) -> int:
    from gateway.client import Client

    with Client(profile(args)) as c:
        g = c.revoke_grant(args.id)
    print(f"grant {g.id} revoked at {g.revoked_at}; it stops releases at once, also in flight")
    return 0


def register(sub: Subparsers) -> None:
    grant = add_group(sub, "grant", "grants of your node's datasets (operators)")
    sp = add_command(grant, "add", "write a grant for one of your datasets", cmd_grant_add)
    client_options(sp)
    sp.add_argument("--dataset", required=True)
    who = sp.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", help="grantee user id (user@org); needs --user-org")
    who.add_argument("--org", help="grantee organisation (as in its certificates)")
    who.add_argument("--node", help="grantee node id (every user it vouches for)")
    sp.add_argument("--user-org", default="", help="the --user's organisation (as in its cert)")
    sp.add_argument("--ops", default="query", help="query,psi,train (default: query)")
    sp.add_argument(
        "--column",
        action="append",
        default=[],
        required=True,
        help="name=control[,control]: raw, group_by, aggregate, filter, extremes, join_key",
    )
    sp.add_argument("--min-group-size", type=whole(1, INT32), default=10, help="k (default 10)")
    sp.add_argument("--dp-epsilon", type=float, default=0.0, help="epsilon per query (0: no DP)")
    sp.add_argument("--dp-budget", type=float, default=0.0, help="total epsilon")
    sp.add_argument("--purpose", default="", help="required purpose of use (default: any)")
    sp.add_argument("--valid-from", default="", help="ISO date/time (default: now)")
    sp.add_argument("--expires", default="", help="ISO date/time (default: never)")
    sp.add_argument("--max-uses", type=whole(0, INT32), default=0, help="0: unlimited")
    sp.add_argument(
        "--exact",
        action="store_true",
        help="opt out of L2 noise: exact answers under k alone, exact join aggregates, and "
        "training on L2 data without DP (shown in the disclosure report; see "
        "docs/security.md)",
    )
    add_train_limits(sp)
    sp.add_argument(
        "--max-examples",
        type=whole(0, INT32),
        default=0,
        help="ops train: examples a round (0: all)",
    )
    sp = add_command(grant, "list", "list the grants of your node", cmd_grant_list)
    client_options(sp)
    sp.add_argument("--dataset", default="")
    sp = add_command(
        grant, "revoke", "revoke a grant now (stops in-flight releases too)", cmd_grant_revoke
    )
    client_options(sp)
    sp.add_argument("id")
