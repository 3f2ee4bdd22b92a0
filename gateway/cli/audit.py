"""``fedgate audit``: export, verify and witness the signed, hash-chained audit trail."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from gateway.cli.common import (
    Subparsers,
    add_command,
    add_group,
    client_options,
    path,
    profile,
    writable_file,
)


def cmd_audit_export(args: argparse.Namespace) -> int:
    from gateway.client import Client

    out = writable_file(args.out, "--out")  # before the export writes its own entry
    # through a symlink: its target gets the export, not the link (diff review, 2026-12-05)
    target = writable_file(str(out.resolve()), "--out")
    if target.exists() and not target.is_file():  # a pipe, /dev/stdout: written as it comes
        with Client(profile(args)) as c, target.open("wb") as fh:
            entries = write_export(c.audit_export_chunks(), fh)
    else:
        part = target.with_name(target.name + ".part")  # the file appears whole, or not at all
        try:
            with Client(profile(args)) as c, part.open("wb") as fh:
                entries = write_export(c.audit_export_chunks(), fh)
            part.replace(target)
        finally:
            part.unlink(missing_ok=True)
    print(f"{entries} audit entries of {c.profile.node} exported to {args.out}")
    return 0


def write_export(chunks: Iterable[bytes], fh: BinaryIO) -> int:
    """Write each chunk of an export as it comes, and count its entries (``E`` lines) as
    they pass: the whole export was held in memory, then cut into lines to count them
    (review, 2026-12-05)."""
    entries, tail = 0, b"\n"  # the file's start is a line's
    for chunk in chunks:
        fh.write(chunk)
        seen = tail + chunk  # a line's start "\nE\t" may be cut between two chunks
        entries += seen.count(b"\nE\t")
        tail = seen[-2:]  # shorter than "\nE\t": no start is counted twice
    return entries


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from gateway import identity
    from gateway.verifier import VerifyError, verify

    bundle = identity.load_bundle(Path(args.ca))
    extra: list[str] = []
    about: dict[str, set[str]] = {}  # per witness file, the nodes its heads are of
    try:
        for w in args.witness:
            lines = Path(w).read_text(encoding="utf-8").split("\n")
            bad = next(
                (n for n, x in enumerate(lines, 1) if x.strip() and not x.startswith("W\t")), 0
            )
            if bad:  # named here, where the file is known (verify numbers all files as one)
                raise VerifyError(
                    f"{w} line {bad} is not a witnessed head (a witness file is what "
                    "fedgate audit witnesses writes)"
                )
            extra += lines
            about[w] = {_head_node(x) for x in lines if x.strip()}
        with open(args.file, encoding="utf-8") as fh:
            report = verify(fh, bundle, extra)
        for w, nodes in about.items():  # an empty, stale-typo or other node's file
            if report.node not in nodes:
                raise VerifyError(
                    f"{w} holds no head of {report.node} (fedgate audit witnesses --node "
                    f"{report.node} writes them)"
                )
    except VerifyError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    except UnicodeDecodeError:
        print("FAILED: not an audit export or witness file (not UTF-8 text)", file=sys.stderr)
        return 1
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(report.kinds.items()))
    print(
        f"OK: {report.entries} entries of node {report.node}, chain intact, "
        f"{report.heads} signed heads, {report.witnessed} witnessed heads match"
    )
    print(f"entries by kind: {kinds}")
    for witness, size in sorted(report.covered.items()):
        print(f"witnessed by {witness}: up to entry {size} of {report.entries}")
    if args.witness:  # what the peers' own files added: the independent part
        print(f"from the {len(args.witness)} witness files: {report.from_files} heads match")
    return 0


def _head_node(line: str) -> str:
    """The node a witness line's head is of ("" when it cannot be read: verify says why)."""
    from federation.canonical import loads

    try:
        node = loads(line[2:]).get("node", "")
    except (ValueError, AttributeError):
        return ""
    return node if isinstance(node, str) else ""


def cmd_audit_show(args: argparse.Namespace) -> int:
    from gateway.client import Client

    with Client(profile(args)) as c:
        entries = c.audit_show(args.request)
    if not entries:
        print(f"no audit entries for request {args.request} at {c.profile.node}")
        return 1
    for e in entries:
        print(json.dumps(json.loads(e), indent=2, ensure_ascii=False))
    return 0


def cmd_audit_witness(args: argparse.Namespace) -> int:
    from gateway.client import Client

    with Client(profile(args)) as c:
        resp = c.witness_now()
    for w in resp.countersigned:
        print(f"{w.witness} countersigned head size {w.size} ({w.head[:16]}...) at {w.time}")
    for e in resp.errors:
        print(f"not countersigned: {e}", file=sys.stderr)
    return 0 if not resp.errors else 1


def cmd_audit_witnesses(args: argparse.Namespace) -> int:
    from federation.canonical import canonical
    from gateway.client import Client
    from gateway.serde import witnessed_head_from_proto
    from gateway.witness import witnessed_dict

    out = writable_file(args.out, "--out")
    part = out.with_name(out.name + ".part")  # the file appears whole, or not at all
    count = 0
    try:
        with Client(profile(args)) as c, part.open("w") as fh:
            for w in c.witnessed_heads(args.node):  # a page at a time, never all in memory
                fh.write("W\t" + canonical(witnessed_dict(witnessed_head_from_proto(w))) + "\n")
                count += 1
        if not count:  # a typo, or a node never witnessed here: no file that would pass
            print(
                f"no heads of {args.node!r} witnessed by {c.profile.node}: nothing written "
                "(is it a member's node id? has a witnessing round run?)",
                file=sys.stderr,
            )
            return 1
        part.replace(out)
    finally:
        part.unlink(missing_ok=True)
    print(f"{count} heads of {args.node} witnessed by {c.profile.node}: {args.out}")
    return 0


def register(sub: Subparsers) -> None:
    audit = add_group(sub, "audit", "the signed, hash-chained audit trail")
    sp = add_command(
        audit, "export", "export your node's audit log for an auditor (operators)", cmd_audit_export
    )
    client_options(sp)
    sp.add_argument("--out", type=path, required=True, help="file to write")
    sp = add_command(
        audit, "verify", "verify an exported log offline with the CA certificate", cmd_audit_verify
    )
    sp.add_argument(
        "file",
        type=path,
    )
    sp.add_argument("--ca", type=path, required=True, help="federation CA certificate")
    sp.add_argument(
        "--witness",
        type=path,
        action="append",
        default=[],
        help="heads witnessed by peers (from `fedgate audit witnesses`)",
    )
    sp = add_command(audit, "show", "the audit evidence of one request (operators)", cmd_audit_show)
    client_options(sp)
    sp.add_argument("--request", required=True, help="request id (query or access request)")
    sp = add_command(
        audit, "witness", "have every peer countersign your node's head now", cmd_audit_witness
    )
    client_options(sp)
    sp = add_command(
        audit,
        "witnesses",
        "heads of another node that your node countersigned",
        cmd_audit_witnesses,
    )
    client_options(sp)
    sp.add_argument("--node", required=True, help="the node whose heads you witnessed")
    sp.add_argument("--out", type=path, required=True)
