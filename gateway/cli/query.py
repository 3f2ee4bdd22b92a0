"""``fedgate query``: federated aggregate SQL through your home node, or its dry run."""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.cli.common import (
    Subparsers,
    add_command,
    client_options,
    file_name,
    path,
    profile,
    seconds,
    writable_file,
    writable_folder,
)
from gateway.errors import FedgateError

if TYPE_CHECKING:
    import pyarrow as pa

    from gateway.client import Client, QueryResult
    from gateway.rpc.v1 import gateway_pb2

_EXPLAIN_HEADERS = [
    "owner",
    "via",
    "decision",
    "grant",
    "level",
    "k",
    "epsilon",
    "L2 noise",
    "columns / reason",
]


def _explain_rows(resp: gateway_pb2.QueryResponse) -> list[list[object]]:
    """One row per owner of a dry run: what it would release, or why it refuses.

    The one place that reads an owner's explain answer off the wire.
    """
    rows: list[list[object]] = []
    for o in resp.owners:
        if o.ok:
            e = o.explanation
            cols = "; ".join(f"{c.column}: {','.join(c.roles)}" for c in e.columns)
            rows.append(
                [
                    o.node_id,
                    o.via,
                    "allowed",
                    e.grant_id,
                    e.level,
                    e.min_group_size,
                    f"{e.epsilon:g}",
                    "sticky" if e.l2_noise else "-",
                    cols,
                ]
            )
        else:
            rows.append([o.node_id, o.via, "REFUSED", "", "", "", "", "", o.error])
    return rows


def _explain(client: Client, args: argparse.Namespace, nodes: list[str]) -> int:
    from gateway import display

    resp = client.explain(args.sql, purpose=args.purpose, nodes=nodes)
    print(f"plan: {resp.plan}\nplan digest: {resp.plan_digest}")
    print(display.table(_EXPLAIN_HEADERS, _explain_rows(resp)))
    return 0 if all(o.ok for o in resp.owners) else 1


def _write_table(table: pa.Table, path: Path) -> None:
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, path)
    elif path.suffix.lower() == ".csv":
        import pyarrow.csv as pacsv

        pacsv.write_csv(table, path)
    else:
        raise FedgateError(f"--out {path}: the file name must end in .csv or .parquet")


def _noise_note(noised: list[str]) -> str:
    if not noised:
        return "no L2 noise"
    return f"sticky L2 noise from {', '.join(noised)} (docs/security.md)"


def _format_value(value: object) -> str:
    """Plain integers (a year or a code must not read "1,989"); floats to 4 places."""
    if isinstance(value, float):
        return f"{value:.4f}".rstrip("0").rstrip(".") if abs(value) < 1e15 else f"{value:.6g}"
    return "NULL" if value is None else str(value)


def _missing_reasons(result: QueryResult) -> dict[str, dict[str, str]]:
    """Why each missing owner is missing: its status and reason (the peer's own words, as
    it or the relay it answered through sent them), and the relay, if any."""
    reasons: dict[str, dict[str, str]] = {}
    for o in result.owners:
        if not o.ok and o.node_id in result.missing:
            reasons[o.node_id] = {"code": o.error_code, "reason": o.error, "via": o.via}
    return reasons


def _print_result(result: QueryResult, args: argparse.Namespace) -> None:
    """The table on stdout (or in --out), what it is made of on stderr."""
    from gateway import display
    from gateway.text import shown

    table = result.table
    if args.receipts:
        folder = Path(args.receipts)
        folder.mkdir(parents=True, exist_ok=True)
        for owner, receipt in result.receipts.items():
            (folder / (file_name(result.request_id, owner) + ".json")).write_text(receipt)
        print(f"{len(result.receipts)} signed receipts in {folder}", file=sys.stderr)
    if args.out:
        _write_table(table, Path(args.out))
        print(f"{table.num_rows} rows written to {args.out}", file=sys.stderr)
    elif args.format == "csv":
        import pyarrow.csv as pacsv

        sink = io.BytesIO()
        pacsv.write_csv(table, sink)
        sys.stdout.write(sink.getvalue().decode())
    elif args.format == "json":
        meta = {
            "request_id": result.request_id,
            "owners": result.contributors,
            "missing": list(result.missing),
            "missing_reasons": _missing_reasons(result),
            "l2_noise": result.noised,
            "epsilon_spent": result.epsilon_spent,
        }
        print(json.dumps({"rows": table.to_pylist(), "meta": meta}, default=str, indent=2))
    else:
        rows = [[_format_value(v) for v in r.values()] for r in table.to_pylist()]
        print(display.table(table.column_names, rows))
    if args.format != "json":
        print(
            f"\n{table.num_rows} rows from {len(result.contributors)} owners "
            f"({', '.join(result.contributors)}); groups under each owner's k withheld at "
            f"source; {_noise_note(result.noised)}; epsilon spent: "
            f"{result.epsilon_spent:g}; request {result.request_id}",
            file=sys.stderr,
        )
        if result.missing:
            print(f"MISSING owners (partial result): {', '.join(result.missing)}", file=sys.stderr)
            for node, why in _missing_reasons(result).items():
                # every part as a peer sent it: shown escaped (a relay names its children)
                via = f" (via {shown(why['via'])})" if why["via"] else ""
                print(
                    f"  {shown(node)}{via}: {shown(why['code'])}: {shown(why['reason'])}",
                    file=sys.stderr,
                )


def cmd_query(args: argparse.Namespace) -> int:
    from gateway.client import Client

    nodes = [n.strip() for n in args.nodes.split(",")] if args.nodes else []  # "": every member
    if not all(nodes):
        raise FedgateError(f"--nodes {args.nodes!r}: an empty node name")
    if args.out and Path(args.out).suffix.lower() not in (".csv", ".parquet"):
        raise FedgateError(f"--out {args.out}: the file name must end in .csv or .parquet")
    if args.out:
        writable_file(args.out, "--out")
    if args.receipts and args.explain:  # was ignored: a dry run releases no receipt
        raise FedgateError("--receipts is for an answered query, not with --explain")
    if args.receipts:
        writable_folder(args.receipts, "--receipts")
    with Client(profile(args), timeout=args.timeout) as c:
        if args.explain:
            return _explain(c, args, nodes)
        result = c.query(
            args.sql, purpose=args.purpose, allow_partial=args.allow_partial, nodes=nodes
        )
    _print_result(result, args)
    return 0


def register(sub: Subparsers) -> None:
    sp = add_command(sub, "query", "run federated aggregate SQL through your home node", cmd_query)
    client_options(sp)
    sp.add_argument("sql", help="SELECT ... FROM dataset | node.dataset (see docs/sql.md)")
    sp.add_argument("--format", choices=["table", "json", "csv"], default="table")
    sp.add_argument("--out", type=path, help="write the result to FILE.csv or FILE.parquet")
    sp.add_argument(
        "--explain",
        action="store_true",
        help="dry run: owners, grants, column roles, privacy cost or refusal",
    )
    sp.add_argument(
        "--allow-partial",
        action="store_true",
        help="answer without owners that are down or refuse (and name them)",
    )
    sp.add_argument("--purpose", default="", help="purpose of use; grants may require one")
    sp.add_argument("--nodes", help="only these owners, comma-separated")
    sp.add_argument(
        "--receipts", type=path, help="write each owner's signed receipt into this folder"
    )
    sp.add_argument("--timeout", type=seconds, default=60.0, help="seconds (default 60)")
