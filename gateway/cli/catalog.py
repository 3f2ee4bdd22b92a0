"""``fedgate whoami``, ``catalog`` and ``dataset``: who you are and what there is to ask."""

from __future__ import annotations

import argparse
from pathlib import Path

from gateway.cli.common import (
    Subparsers,
    add_command,
    add_group,
    client_options,
    path,
    print_message,
    profile,
    seconds,
    seconds_or_zero,
)


def member_timeout(value: str) -> float:
    """``--member-timeout``: 0 for the node's default, else seconds up to the most a home
    node waits for a member (``MAX_MEMBER_TIMEOUT``, 600): up to 86400 was let through and
    refused by the node with INVALID_ARGUMENT (review, 2026-12-05)."""
    from gateway.roles.federated_catalog import MAX_MEMBER_TIMEOUT

    return seconds_or_zero(value, MAX_MEMBER_TIMEOUT)


def cmd_whoami(args: argparse.Namespace) -> int:
    from gateway.client import Client

    with Client(profile(args)) as c:
        print_message(c.whoami())
    return 0


def cmd_catalog(args: argparse.Namespace) -> int:
    from gateway import display
    from gateway.client import Client

    with Client(profile(args), timeout=args.timeout) as c:
        if args.local:
            local = c.catalog(args.name)
            if args.format == "json":
                print_message(local)
            else:
                rows = [
                    [d.name, d.level, f"{d.rows:,}", d.updated_at, d.title] for d in local.datasets
                ]
                print(display.table(["dataset", "level", "rows", "last update", "title"], rows))
            return 0
        resp = c.federated_catalog(args.name, member_timeout=args.member_timeout)
    if args.format == "json":
        print_message(resp)
    else:
        print(display.federated_catalog_table(resp))
        down = [m.node_id for m in resp.members if not m.reachable]
        if down:
            print(f"\nunreachable members: {', '.join(down)}")
    return 0


def cmd_dataset_register(args: argparse.Namespace) -> int:
    from gateway.client import Client

    with Client(profile(args)) as c:
        for path in args.descriptors:
            resp = c.register(Path(path))
            d = resp.dataset
            verb = "re-registered" if resp.replaced else "registered"
            print(f"{verb} {d.name} ({d.level}): {d.rows:,} rows, {len(d.columns)} columns")
            if args.verbose:
                for q in d.quality.columns:
                    rng = f" min={q.min:g} max={q.max:g}" if q.HasField("min") else ""
                    print(f"  {q.name}: nulls {q.null_rate:.2%}{rng}")
    return 0


def register(sub: Subparsers) -> None:
    sp = add_command(sub, "whoami", "who the home node thinks you are", cmd_whoami)
    client_options(sp)
    sp = add_command(sub, "catalog", "list datasets across the federation", cmd_catalog)
    client_options(sp)
    sp.add_argument("--local", action="store_true", help="only the home node's datasets")
    sp.add_argument("--name", default="", help="only datasets whose name contains this")
    sp.add_argument(
        "--format",
        choices=["table", "json"],
        default="table",
        help="output format (default: table)",
    )
    sp.add_argument("--timeout", type=seconds, default=30.0, help="whole request, seconds")
    sp.add_argument(
        "--member-timeout",
        type=member_timeout,
        default=0.0,
        help="per member, seconds, at most 600 (default: the node's)",
    )

    ds = add_group(sub, "dataset", "datasets of your node")
    sp = add_command(
        ds, "register", "register files described by descriptors (operators)", cmd_dataset_register
    )
    client_options(sp)
    sp.add_argument("descriptors", type=path, nargs="+", help="descriptor TOML files")
    sp.add_argument("-v", "--verbose", action="store_true", help="print the quality report")
