"""``fedgate disclosure``: a node's public report of its grants and their use."""

from __future__ import annotations

import argparse
import sys

from gateway.cli.common import (
    Subparsers,
    add_command,
    client_options,
    path,
    profile,
    writable_file,
)


def cmd_disclosure(args: argparse.Namespace) -> int:
    from gateway import disclosure, serde
    from gateway.client import Client
    from gateway.text import shown

    out = writable_file(args.out, "--out") if args.out else None  # before asking any node
    with Client(profile(args)) as c:
        report = serde.disclosure_report_from_proto(c.disclosure(args.node, args.since, args.until))
    render = {"md": disclosure.to_markdown, "json": disclosure.to_json, "html": disclosure.to_html}[
        args.format
    ]
    text = render(report)
    if out is not None:
        out.write_text(text)
        print(f"disclosure report of {shown(report.node)} written to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def register(sub: Subparsers) -> None:
    sp = add_command(
        sub, "disclosure", "a node's public disclosure report: grants and usage", cmd_disclosure
    )
    client_options(sp)
    sp.add_argument("--node", default="", help="member to report on (default: home node)")
    sp.add_argument("--format", choices=["md", "json", "html"], default="md")
    sp.add_argument("--since", default="", help="usage period start (ISO date)")
    sp.add_argument("--until", default="", help="usage period end (ISO date)")
    sp.add_argument("--out", type=path, help="write to a file")
