"""The ``fedgate`` command. Each sub-command is documented in docs/cli.md.

Errors are printed as one line naming what is wrong (never a traceback) and give a
non-zero exit: 2 for bad input or configuration, 1 for a refused or failed RPC.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from google.protobuf import json_format

from gateway.errors import FedgateError

DEFAULT_REGIONS = Path(__file__).resolve().parents[1] / "region_configs"


def _profile(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from gateway.client import Profile

    path = args.profile or os.environ.get("FEDGATE_PROFILE")
    if not path:
        raise FedgateError("no profile: pass --profile FILE or set FEDGATE_PROFILE")
    return Profile.load(Path(path))


# --- ca / cert / membership -------------------------------------------------------------


def cmd_ca_init(args: argparse.Namespace) -> int:
    from gateway import identity

    cert = identity.init_ca(Path(args.dir), name=args.name, days=args.days)
    print(f"CA certificate: {cert}\nCA key: {Path(args.dir) / identity.CA_KEY} (keep it offline)")
    return 0


def cmd_ca_sign(args: argparse.Namespace) -> int:
    from gateway import identity

    csr = Path(args.csr)
    try:
        csr_pem = csr.read_bytes()
    except FileNotFoundError:
        raise FedgateError(f"CSR file {csr} does not exist") from None
    pem = identity.sign_csr(Path(args.dir), csr_pem, days=args.days)
    out = Path(args.out) if args.out else csr.with_suffix(".pem")
    out.write_bytes(pem)
    ident = identity.identity_of(identity.load_cert(out))
    print(f"signed {ident.role} {ident.id} ({ident.org}), serial {ident.serial}: {out}")
    return 0


def cmd_ca_revoke(args: argparse.Namespace) -> int:
    from gateway import identity

    if args.cert:
        serial = identity.load_cert(Path(args.cert)).serial_number
    else:
        try:
            serial = int(args.serial, 16)
        except ValueError:
            raise FedgateError(f"--serial {args.serial!r} is not hexadecimal") from None
    crl = identity.revoke(Path(args.dir), serial)
    print(f"revoked serial {serial:x}; CRL written to {crl} (nodes reload it on change)")
    return 0


def cmd_ca_crl(args: argparse.Namespace) -> int:
    from gateway import identity

    crl = identity.write_crl(Path(args.dir), next_update_days=args.days)
    print(f"CRL re-issued, valid {args.days} days: {crl}")
    return 0


def cmd_cert_request(args: argparse.Namespace) -> int:
    from gateway import identity

    out = Path(args.out_dir)
    stem = args.name or args.id
    key_pem, csr_pem = identity.make_csr(args.role, args.id, args.org, args.host)
    identity.write_private(out / f"{stem}.key", key_pem)
    (out / f"{stem}.csr").write_bytes(csr_pem)
    print(f"private key: {out / (stem + '.key')} (stays here)\nCSR: {out / (stem + '.csr')}")
    return 0


def cmd_cert_show(args: argparse.Namespace) -> int:
    from gateway import identity

    cert = identity.load_cert(Path(args.cert))
    ident = identity.identity_of(cert)
    print(f"role:    {ident.role}\nid:      {ident.id}\norg:     {ident.org}")
    print(f"serial:  {ident.serial}\nexpires: {ident.not_after:%Y-%m-%d %H:%M} UTC")
    return 0


def cmd_membership_sign(args: argparse.Namespace) -> int:
    import tomllib

    from federation import membership as m
    from gateway import identity

    try:
        raw = tomllib.loads(Path(args.input).read_text(encoding="utf-8"))
        members = tuple(m.Member(**x) for x in raw["members"])
        doc = m.Membership(
            federation=raw["federation"],
            serial=int(raw.get("serial", 1)),
            issued_at=m.now_rfc3339(),
            members=members,
        )
    except FileNotFoundError:
        raise FedgateError(f"{args.input} does not exist") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise FedgateError(f"{args.input}: bad membership input: {exc}") from None
    key = identity.load_key(Path(args.ca_dir) / identity.CA_KEY)
    Path(args.out).write_bytes(m.sign(doc, key))
    print(f"membership of {len(members)} members, serial {doc.serial}, signed: {args.out}")
    return 0


def cmd_membership_show(args: argparse.Namespace) -> int:
    from federation import membership as m
    from gateway import display, identity

    bundle = identity.load_bundle(Path(args.ca))
    doc = m.verify(Path(args.file).read_bytes(), [c.public_key() for c in bundle])
    print(f"federation {doc.federation}, serial {doc.serial}, issued {doc.issued_at}: signature OK")
    rows = [[x.id, x.name, x.level, x.parent, x.address, x.org] for x in doc.members]
    print(display.table(["id", "name", "level", "parent", "address", "org"], rows))
    return 0


def cmd_federation_init(args: argparse.Namespace) -> int:
    from gateway import sample_data
    from gateway.provision import provision

    fed = provision(
        Path(args.workdir), Path(args.regions), free_ports=args.free_ports, progress=print
    )
    if args.sample_data:
        sample_data.generate(fed.workdir / "data", seed=args.seed, scale=args.scale, progress=print)
    print(f"node configs: {fed.workdir / 'configs'}; profiles: {fed.workdir / 'profiles'}")
    return 0


# --- node ---------------------------------------------------------------------------------


def cmd_node_start(args: argparse.Namespace) -> int:
    from gateway import config, server

    cfg = config.load(Path(args.config))
    return server.run(cfg)


# --- client commands ----------------------------------------------------------------------


def _print_message(msg, fmt: str) -> None:  # type: ignore[no-untyped-def]
    print(json_format.MessageToJson(msg, preserving_proto_field_name=True, indent=2))


def cmd_whoami(args: argparse.Namespace) -> int:
    from gateway.client import Client

    with Client(_profile(args)) as c:
        _print_message(c.whoami(), "json")
    return 0


def cmd_catalog(args: argparse.Namespace) -> int:
    from gateway import display
    from gateway.client import Client

    with Client(_profile(args), timeout=args.timeout) as c:
        if args.local:
            resp = c.catalog(args.name)
            if args.format == "json":
                _print_message(resp, "json")
            else:
                rows = [
                    [d.name, d.level, f"{d.rows:,}", d.updated_at, d.title] for d in resp.datasets
                ]
                print(display.table(["dataset", "level", "rows", "last update", "title"], rows))
            return 0
        resp = c.federated_catalog(args.name, member_timeout=args.member_timeout)
    if args.format == "json":
        _print_message(resp, "json")
    else:
        print(display.federated_catalog_table(resp))
        down = [m.node_id for m in resp.members if not m.reachable]
        if down:
            print(f"\nunreachable members: {', '.join(down)}")
    return 0


def cmd_dataset_register(args: argparse.Namespace) -> int:
    from gateway.client import Client

    with Client(_profile(args)) as c:
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


def _write_table(table, path: Path) -> None:  # type: ignore[no-untyped-def]
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, path)
    elif path.suffix.lower() == ".csv":
        import pyarrow.csv as pacsv

        pacsv.write_csv(table, path)
    else:
        raise FedgateError(f"--out {path}: the file name must end in .csv or .parquet")


def _format_value(value: object) -> str:
    """Plain integers (a year or a code must not read "1,989"); floats to 4 places."""
    if isinstance(value, float):
        return f"{value:.4f}".rstrip("0").rstrip(".") if abs(value) < 1e15 else f"{value:.6g}"
    return "NULL" if value is None else str(value)


def cmd_query(args: argparse.Namespace) -> int:
    import sys as _sys

    from gateway import display
    from gateway.client import Client

    nodes = [n for n in (args.nodes or "").split(",") if n]
    if args.out and Path(args.out).suffix.lower() not in (".csv", ".parquet"):
        raise FedgateError(f"--out {args.out}: the file name must end in .csv or .parquet")
    with Client(_profile(args), timeout=args.timeout) as c:
        if args.explain:
            resp = c.explain(args.sql, purpose=args.purpose, nodes=nodes)
            print(f"plan: {resp.plan}\nplan digest: {resp.plan_digest}")
            rows = []
            for o in resp.owners:
                if o.ok:
                    info = json.loads(o.explain)
                    cols = "; ".join(f"{k}: {','.join(v)}" for k, v in info["columns"].items())
                    rows.append(
                        [
                            o.node_id,
                            o.via,
                            "allowed",
                            info["grant"],
                            info["level"],
                            info["min_group_size"],
                            f"{info['epsilon']:g}",
                            cols,
                        ]
                    )
                else:
                    rows.append([o.node_id, o.via, "REFUSED", "", "", "", "", o.error])
            print(
                display.table(
                    [
                        "owner",
                        "via",
                        "decision",
                        "grant",
                        "level",
                        "k",
                        "epsilon",
                        "columns / reason",
                    ],
                    rows,
                )
            )
            return 0 if all(o.ok for o in resp.owners) else 1
        result = c.query(
            args.sql, purpose=args.purpose, allow_partial=args.allow_partial, nodes=nodes
        )
    table = result.table
    if args.receipts:
        folder = Path(args.receipts)
        folder.mkdir(parents=True, exist_ok=True)
        for owner, receipt in result.receipts.items():
            (folder / f"{result.request_id}-{owner}.json").write_text(receipt)
        print(f"{len(result.receipts)} signed receipts in {folder}", file=_sys.stderr)
    if args.out:
        _write_table(table, Path(args.out))
        print(f"{table.num_rows} rows written to {args.out}", file=_sys.stderr)
    elif args.format == "csv":
        import pyarrow.csv as pacsv

        sink = io.BytesIO()
        pacsv.write_csv(table, sink)
        _sys.stdout.write(sink.getvalue().decode())
    elif args.format == "json":
        meta = {
            "request_id": result.request_id,
            "owners": result.contributors,
            "missing": list(result.missing),
            "suppressed": result.suppressed,
            "epsilon_spent": result.epsilon_spent,
        }
        print(json.dumps({"rows": table.to_pylist(), "meta": meta}, default=str, indent=2))
    else:
        rows = [[_format_value(v) for v in r.values()] for r in table.to_pylist()]
        print(display.table(table.column_names, rows))
    if args.format != "json":
        suppressed = sum(result.suppressed.values())
        print(
            f"\n{table.num_rows} rows from {len(result.contributors)} owners "
            f"({', '.join(result.contributors)}); groups suppressed at source: {suppressed}; "
            f"epsilon spent: {result.epsilon_spent:g}; request {result.request_id}",
            file=_sys.stderr,
        )
        if result.missing:
            print(f"MISSING owners (partial result): {', '.join(result.missing)}", file=_sys.stderr)
    return 0


def _grant_row(g) -> list[object]:  # type: ignore[no-untyped-def]
    cols = "; ".join(f"{c.column}:{'+'.join(c.controls)}" for c in g.columns)
    dp = f"{g.epsilon_spent:g}/{g.dp_budget:g} (e={g.dp_epsilon:g})" if g.dp_epsilon else "-"
    uses = f"{g.uses}/{g.max_uses}" if g.max_uses else str(g.uses)
    return [
        g.id,
        g.dataset,
        f"{g.grantee_kind}:{g.grantee}",
        ",".join(g.operations),
        cols,
        g.min_group_size,
        dp,
        uses,
        g.expires or "-",
        g.status,
    ]


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


def cmd_grant_add(args: argparse.Namespace) -> int:
    from gateway import display
    from gateway.client import Client
    from gateway.rpc.v1 import common_pb2

    kinds = [(k, v) for k, v in (("user", args.user), ("org", args.org), ("node", args.node)) if v]
    kind, grantee = kinds[0]
    columns = _controls(args.column)
    grant = common_pb2.Grant(
        dataset=args.dataset,
        grantee_kind=kind,
        grantee=grantee,
        operations=args.ops.split(","),
        columns=columns,
        min_group_size=args.min_group_size,
        dp_epsilon=args.dp_epsilon,
        dp_budget=args.dp_budget,
        purpose=args.purpose,
        valid_from=args.valid_from,
        expires=args.expires,
        max_uses=args.max_uses,
        grantee_org=args.user_org,
    )
    with Client(_profile(args)) as c:
        g = c.add_grant(grant)
    print(display.table(_GRANT_HEADERS, [_grant_row(g)]))
    return 0


def cmd_grant_list(args: argparse.Namespace) -> int:
    from gateway import display
    from gateway.client import Client

    with Client(_profile(args)) as c:
        grants = c.list_grants(args.dataset)
    print(display.table(_GRANT_HEADERS, [_grant_row(g) for g in grants]))
    return 0


def cmd_grant_revoke(args: argparse.Namespace) -> int:
    from gateway.client import Client

    with Client(_profile(args)) as c:
        g = c.revoke_grant(args.id)
    print(f"grant {g.id} revoked at {g.revoked_at}; it stops releases at once, also in flight")
    return 0


def cmd_receipt_list(args: argparse.Namespace) -> int:
    from gateway.client import Client
    from gateway.receipts import Receipt

    with Client(_profile(args)) as c:
        kept = [Receipt.from_json(r) for r in c.receipts(args.request)]
    folder = Path(args.out) if args.out else None
    if folder:
        folder.mkdir(parents=True, exist_ok=True)
    for r in kept:
        b = r.body
        print(
            f"{r.owner}: {b.get('dataset')} grant {b.get('grant_id')}, "
            f"{b.get('groups_released')} groups, epsilon {b.get('epsilon')}, "
            f"audit entry {b.get('audit_seq')}"
        )
        if folder:
            (folder / f"{args.request}-{r.owner}.json").write_text(r.to_json())
    return 0


def cmd_receipt_verify(args: argparse.Namespace) -> int:
    from gateway import identity, receipts

    try:
        text = Path(args.file).read_text()
    except FileNotFoundError:
        raise FedgateError(f"receipt file {args.file} does not exist") from None
    receipt = receipts.Receipt.from_json(text)
    signer = receipts.verify(receipt, identity.load_bundle(Path(args.ca)))
    b = receipt.body
    print(f"receipt OK: signed by node {signer}")
    for key in (
        "request_id",
        "requester",
        "home_node",
        "dataset",
        "grant_id",
        "plan_digest",
        "result_digest",
        "groups_released",
        "groups_suppressed",
        "epsilon",
        "time",
    ):
        print(f"  {key}: {b.get(key)}")
    return 0


def cmd_audit_export(args: argparse.Namespace) -> int:
    from gateway.client import Client

    with Client(_profile(args)) as c:
        data = c.audit_export()
    Path(args.out).write_bytes(data)
    entries = sum(1 for line in data.splitlines() if line.startswith(b"E\t"))
    print(f"{entries} audit entries of {c.profile.node} exported to {args.out}")
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from gateway import identity
    from gateway.verifier import VerifyError, verify

    bundle = identity.load_bundle(Path(args.ca))
    extra: list[str] = []
    for w in args.witness:
        extra += Path(w).read_text().splitlines()
    with open(args.file, encoding="utf-8") as fh:
        try:
            report = verify(fh, bundle, extra)
        except VerifyError as exc:
            print(f"FAILED: {exc}", file=sys.stderr)
            return 1
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(report.kinds.items()))
    print(
        f"OK: {report.entries} entries of node {report.node}, chain intact, "
        f"{report.heads} signed heads, {report.witnessed} witnessed heads match"
    )
    print(f"entries by kind: {kinds}")
    return 0


def cmd_audit_show(args: argparse.Namespace) -> int:
    from gateway.client import Client

    with Client(_profile(args)) as c:
        entries = c.audit_show(args.request)
    if not entries:
        print(f"no audit entries for request {args.request} at {c.profile.node}")
        return 1
    for e in entries:
        print(json.dumps(json.loads(e), indent=2, ensure_ascii=False))
    return 0


def cmd_audit_witness(args: argparse.Namespace) -> int:
    from gateway.client import Client

    with Client(_profile(args)) as c:
        resp = c.witness_now()
    for w in resp.countersigned:
        print(f"{w.witness} countersigned head size {w.size} ({w.head[:16]}...) at {w.time}")
    for e in resp.errors:
        print(f"not countersigned: {e}", file=sys.stderr)
    return 0 if not resp.errors else 1


def cmd_audit_witnesses(args: argparse.Namespace) -> int:
    from gateway.audit import canonical
    from gateway.client import Client
    from gateway.witness import witnessed_dict

    with Client(_profile(args)) as c:
        heads = c.witnessed_heads(args.node)
    lines = ["W\t" + canonical(witnessed_dict(w)) + "\n" for w in heads]
    Path(args.out).write_text("".join(lines))
    print(f"{len(heads)} heads of {args.node} witnessed by {c.profile.node}: {args.out}")
    return 0


def _request_row(r) -> list[object]:  # type: ignore[no-untyped-def]
    cols = "; ".join(f"{c.column}:{'+'.join(c.controls)}" for c in r.columns)
    return [
        r.id,
        r.owner,
        r.dataset,
        r.requester.id,
        cols,
        ",".join(r.operations),
        r.purpose,
        r.expires or "-",
        r.state,
        r.grant_id or "-",
    ]


_REQUEST_HEADERS = [
    "id",
    "owner",
    "dataset",
    "requester",
    "columns",
    "ops",
    "purpose",
    "expires",
    "state",
    "grant",
]


def _controls(specs: list[str]):  # type: ignore[no-untyped-def]
    from gateway.rpc.v1 import common_pb2

    out = []
    for spec in specs:
        name, sep, controls = spec.partition("=")
        if not sep or not controls:
            raise FedgateError(f"--column {spec!r} must look like name=control[,control]")
        out.append(common_pb2.ColumnControls(column=name, controls=controls.split(",")))
    return out


def cmd_request_submit(args: argparse.Namespace) -> int:
    from gateway import display
    from gateway.client import Client
    from gateway.rpc.v1 import common_pb2

    owner, sep, dataset = args.dataset.partition(".")
    if not sep:
        raise FedgateError("--dataset must be node.dataset (the owner and its dataset)")
    req = common_pb2.AccessRequest(
        owner=owner,
        dataset=dataset,
        columns=_controls(args.column),
        operations=args.ops.split(","),
        purpose=args.purpose,
        valid_from=args.valid_from,
        expires=args.expires,
    )
    with Client(_profile(args)) as c:
        r = c.submit_access_request(req)
    print(display.table(_REQUEST_HEADERS, [_request_row(r)]))
    return 0


def cmd_request_status(args: argparse.Namespace) -> int:
    from gateway import display
    from gateway.client import Client

    with Client(_profile(args)) as c:
        r = c.access_request_status(args.owner, args.id)
    print(display.table(_REQUEST_HEADERS, [_request_row(r)]))
    if r.decision_note:
        print(f"note from {r.decided_by}: {r.decision_note}")
    return 0


def cmd_request_list(args: argparse.Namespace) -> int:
    from gateway import display
    from gateway.client import Client

    with Client(_profile(args)) as c:
        rows = [_request_row(r) for r in c.list_access_requests(args.state)]
    print(display.table(_REQUEST_HEADERS, rows))
    return 0


def cmd_request_decide(args: argparse.Namespace) -> int:
    from gateway import display
    from gateway.client import Client
    from gateway.rpc.v1 import gateway_pb2

    approve = args.request_command == "approve"
    decision = gateway_pb2.DecideAccessRequestRequest(id=args.id, approve=approve, note=args.note)
    if approve:
        decision.columns.extend(_controls(args.column))
        decision.expires = args.expires
        decision.min_group_size = args.min_group_size
        decision.dp_epsilon = args.dp_epsilon
        decision.dp_budget = args.dp_budget
        decision.max_uses = args.max_uses
    with Client(_profile(args)) as c:
        r = c.decide_access_request(decision)
    print(display.table(_REQUEST_HEADERS, [_request_row(r)]))
    return 0


def cmd_disclosure(args: argparse.Namespace) -> int:
    from gateway import disclosure
    from gateway.client import Client

    with Client(_profile(args)) as c:
        report = c.disclosure(args.node, args.since, args.until)
    render = {"md": disclosure.to_markdown, "json": disclosure.to_json, "html": disclosure.to_html}[
        args.format
    ]
    text = render(report)
    if args.out:
        Path(args.out).write_text(text)
        print(f"disclosure report of {report.node} written to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def cmd_sample_data(args: argparse.Namespace) -> int:
    from gateway import sample_data

    written = sample_data.generate(
        Path(args.out), seed=args.seed, scale=args.scale, nodes=args.nodes or None, progress=print
    )
    print(
        f"{sum(len(v) for v in written.values())} datasets for {len(written)} nodes in {args.out}"
    )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from gateway.demo import run_demo

    return run_demo(
        workdir=Path(args.workdir) if args.workdir else None,
        scale=args.scale,
        seed=args.seed,
        keep=args.keep,
        home=args.home,
    )


# --- parser -------------------------------------------------------------------------------


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fedgate")
    except PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fedgate", description="Federated data-sharing gateway.")
    p.add_argument("--version", action="version", version=f"fedgate {_version()}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(parent, name: str, help_: str, func):  # type: ignore[no-untyped-def]
        sp = parent.add_parser(name, help=help_, description=help_)
        sp.set_defaults(func=func)
        return sp

    def client_opts(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--profile", help="client profile (default: $FEDGATE_PROFILE)")

    ca = sub.add_parser("ca", help="federation certificate authority").add_subparsers(
        dest="ca_command", required=True, metavar="ACTION"
    )
    sp = add(ca, "init", "create a federation root CA (key, certificate, empty CRL)", cmd_ca_init)
    sp.add_argument("--dir", required=True, help="CA folder (created)")
    sp.add_argument(
        "--name",
        default="Yangtze Delta Federation CA",
        help="CA common name (default: %(default)s)",
    )
    sp.add_argument("--days", type=int, default=3650, help="validity (default: %(default)s)")
    sp = add(ca, "sign", "sign a CSR into a certificate carrying role, id and org", cmd_ca_sign)
    sp.add_argument("csr")
    sp.add_argument("--dir", required=True, help="CA folder")
    sp.add_argument("--days", type=int, default=365, help="validity (default: %(default)s)")
    sp.add_argument("--out", help="certificate file (default: CSR name with .pem)")
    sp = add(ca, "revoke", "revoke a certificate and re-issue the CRL", cmd_ca_revoke)
    sp.add_argument("--dir", required=True, help="CA folder")
    g = sp.add_mutually_exclusive_group(required=True)
    g.add_argument("--cert", help="certificate file to revoke")
    g.add_argument("--serial", help="serial number (hex) to revoke")

    sp = add(ca, "crl", "re-issue the CRL (nodes refuse callers once it expires)", cmd_ca_crl)
    sp.add_argument("--dir", required=True, help="CA folder")
    sp.add_argument("--days", type=int, default=7, help="validity in days (default 7)")

    cert = sub.add_parser("cert", help="keys and certificate requests").add_subparsers(
        dest="cert_command", required=True, metavar="ACTION"
    )
    sp = add(
        cert,
        "request",
        "make a private key and a CSR here (the key never leaves)",
        cmd_cert_request,
    )
    sp.add_argument("--role", required=True, choices=["node", "operator", "analyst"])
    sp.add_argument("--id", required=True, help="node id, or user@org for people")
    sp.add_argument("--org", required=True, help="organisation")
    sp.add_argument(
        "--host",
        action="append",
        default=[],
        help="node address (IP or DNS) for its server certificate; nodes only",
    )
    sp.add_argument("--out-dir", default=".", help="folder for KEY and CSR")
    sp.add_argument("--name", help="file stem (default: the id)")
    sp = add(cert, "show", "print the identity a certificate carries", cmd_cert_show)
    sp.add_argument("cert")

    mem = sub.add_parser("membership", help="the signed membership document").add_subparsers(
        dest="membership_command", required=True, metavar="ACTION"
    )
    sp = add(mem, "sign", "sign a membership list (TOML) with the CA key", cmd_membership_sign)
    sp.add_argument("--input", required=True, help="TOML: federation, serial, [[members]]")
    sp.add_argument("--ca-dir", required=True)
    sp.add_argument("--out", required=True)
    sp = add(mem, "show", "verify and print a membership document", cmd_membership_show)
    sp.add_argument("file")
    sp.add_argument("--ca", required=True, help="CA certificate (bundle)")

    fed = sub.add_parser("federation", help="local federation set-up").add_subparsers(
        dest="federation_command", required=True, metavar="ACTION"
    )
    sp = add(
        fed, "init", "provision CA, node and user keys, membership and configs", cmd_federation_init
    )
    sp.add_argument(
        "--workdir",
        default=str(DEFAULT_REGIONS.parent / ".fedgate"),
        help="where keys, certificates and data go (default: .fedgate)",
    )
    sp.add_argument(
        "--regions",
        default=str(DEFAULT_REGIONS),
        help="folder with federation.toml and <id>.toml (default: region_configs)",
    )
    sp.add_argument("--free-ports", action="store_true", help="pick free loopback ports")
    sp.add_argument("--sample-data", action="store_true", help="also generate sample data")
    sp.add_argument("--seed", type=int, default=20261125, help="(default: %(default)s)")
    sp.add_argument("--scale", type=float, default=1.0, help="sample data scale (default: 1)")

    node = sub.add_parser("node", help="run a gateway node").add_subparsers(
        dest="node_command", required=True, metavar="ACTION"
    )
    sp = add(node, "start", "run one node until SIGTERM/Ctrl-C", cmd_node_start)
    sp.add_argument("--config", required=True, help="node config (TOML, see docs/config.md)")

    sp = add(sub, "whoami", "who the home node thinks you are", cmd_whoami)
    client_opts(sp)
    sp = add(sub, "catalog", "list datasets across the federation", cmd_catalog)
    client_opts(sp)
    sp.add_argument("--local", action="store_true", help="only the home node's datasets")
    sp.add_argument("--name", default="", help="only datasets whose name contains this")
    sp.add_argument(
        "--format",
        choices=["table", "json"],
        default="table",
        help="output format (default: table)",
    )
    sp.add_argument("--timeout", type=float, default=30.0, help="whole request, seconds")
    sp.add_argument(
        "--member-timeout",
        type=float,
        default=0.0,
        help="per member, seconds (default: the node's)",
    )

    ds = sub.add_parser("dataset", help="datasets of your node").add_subparsers(
        dest="dataset_command", required=True, metavar="ACTION"
    )
    sp = add(
        ds, "register", "register files described by descriptors (operators)", cmd_dataset_register
    )
    client_opts(sp)
    sp.add_argument("descriptors", nargs="+", help="descriptor TOML files")
    sp.add_argument("-v", "--verbose", action="store_true", help="print the quality report")

    sp = add(sub, "query", "run federated aggregate SQL through your home node", cmd_query)
    client_opts(sp)
    sp.add_argument("sql", help="SELECT ... FROM dataset | node.dataset (see docs/sql.md)")
    sp.add_argument("--format", choices=["table", "json", "csv"], default="table")
    sp.add_argument("--out", help="write the result to FILE.csv or FILE.parquet")
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
    sp.add_argument("--receipts", help="write each owner's signed receipt into this folder")
    sp.add_argument("--timeout", type=float, default=60.0, help="seconds (default 60)")

    grant = sub.add_parser("grant", help="grants of your node's datasets (operators)")
    grant = grant.add_subparsers(dest="grant_command", required=True, metavar="ACTION")
    sp = add(grant, "add", "write a grant for one of your datasets", cmd_grant_add)
    client_opts(sp)
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
        help="name=control[,control]: raw, group_by, aggregate, filter, join_key",
    )
    sp.add_argument("--min-group-size", type=int, default=10, help="k (default 10)")
    sp.add_argument("--dp-epsilon", type=float, default=0.0, help="epsilon per query (0: no DP)")
    sp.add_argument("--dp-budget", type=float, default=0.0, help="total epsilon")
    sp.add_argument("--purpose", default="", help="required purpose of use (default: any)")
    sp.add_argument("--valid-from", default="", help="ISO date/time (default: now)")
    sp.add_argument("--expires", default="", help="ISO date/time (default: never)")
    sp.add_argument("--max-uses", type=int, default=0, help="0: unlimited")
    sp = add(grant, "list", "list the grants of your node", cmd_grant_list)
    client_opts(sp)
    sp.add_argument("--dataset", default="")
    sp = add(grant, "revoke", "revoke a grant now (stops in-flight releases too)", cmd_grant_revoke)
    client_opts(sp)
    sp.add_argument("id")

    receipt = sub.add_parser("receipt", help="release receipts")
    receipt = receipt.add_subparsers(dest="receipt_command", required=True, metavar="ACTION")
    sp = add(
        receipt, "list", "receipts your home node keeps for a request (operators)", cmd_receipt_list
    )
    client_opts(sp)
    sp.add_argument("--request", required=True, help="request id")
    sp.add_argument("--out", help="also write each receipt into this folder")
    sp = add(
        receipt, "verify", "check a receipt's signature with the CA certificate", cmd_receipt_verify
    )
    sp.add_argument("file", help="receipt JSON")
    sp.add_argument("--ca", required=True, help="federation CA certificate")

    audit = sub.add_parser("audit", help="the signed, hash-chained audit trail")
    audit = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    sp = add(
        audit, "export", "export your node's audit log for an auditor (operators)", cmd_audit_export
    )
    client_opts(sp)
    sp.add_argument("--out", required=True, help="file to write")
    sp = add(
        audit, "verify", "verify an exported log offline with the CA certificate", cmd_audit_verify
    )
    sp.add_argument("file")
    sp.add_argument("--ca", required=True, help="federation CA certificate")
    sp.add_argument(
        "--witness",
        action="append",
        default=[],
        help="heads witnessed by peers (from `fedgate audit witnesses`)",
    )
    sp = add(audit, "show", "the audit evidence of one request (operators)", cmd_audit_show)
    client_opts(sp)
    sp.add_argument("--request", required=True, help="request id (query or access request)")
    sp = add(
        audit, "witness", "have every peer countersign your node's head now", cmd_audit_witness
    )
    client_opts(sp)
    sp = add(
        audit,
        "witnesses",
        "heads of another node that your node countersigned",
        cmd_audit_witnesses,
    )
    client_opts(sp)
    sp.add_argument("--node", required=True, help="the node whose heads you witnessed")
    sp.add_argument("--out", required=True)

    req = sub.add_parser("request", help="access requests (场景评审)")
    req = req.add_subparsers(dest="request_command", required=True, metavar="ACTION")
    sp = add(
        req, "submit", "ask a data owner for access (analysts and operators)", cmd_request_submit
    )
    client_opts(sp)
    sp.add_argument("--dataset", required=True, help="owner.dataset, e.g. jiangsu.air_quality")
    sp.add_argument(
        "--column", action="append", default=[], required=True, help="name=control[,control]"
    )
    sp.add_argument("--ops", default="query", help="query,psi,train (default: query)")
    sp.add_argument("--purpose", required=True)
    sp.add_argument("--valid-from", default="")
    sp.add_argument("--expires", default="", help="end of the period asked for (ISO date)")
    sp = add(req, "status", "follow your access request", cmd_request_status)
    client_opts(sp)
    sp.add_argument("id")
    sp.add_argument("--owner", required=True, help="the owner node")
    sp = add(req, "list", "access requests for your node's datasets (operators)", cmd_request_list)
    client_opts(sp)
    sp.add_argument("--state", default="", choices=["", "pending", "approved", "denied"])
    sp = add(req, "approve", "approve (possibly narrowed); writes the grant", cmd_request_decide)
    client_opts(sp)
    sp.add_argument("id")
    sp.add_argument("--note", default="")
    sp.add_argument(
        "--column",
        action="append",
        default=[],
        help="narrow to these columns/controls (default: as asked)",
    )
    sp.add_argument("--expires", default="", help="narrow the period (default: as asked)")
    sp.add_argument("--min-group-size", type=int, default=0, help="default: the level's floor")
    sp.add_argument("--dp-epsilon", type=float, default=0.0)
    sp.add_argument("--dp-budget", type=float, default=0.0)
    sp.add_argument("--max-uses", type=int, default=0)
    sp = add(req, "deny", "deny an access request", cmd_request_decide)
    client_opts(sp)
    sp.add_argument("id")
    sp.add_argument("--note", default="")

    sp = add(
        sub, "disclosure", "a node's public disclosure report: grants and usage", cmd_disclosure
    )
    client_opts(sp)
    sp.add_argument("--node", default="", help="member to report on (default: home node)")
    sp.add_argument("--format", choices=["md", "json", "html"], default="md")
    sp.add_argument("--since", default="", help="usage period start (ISO date)")
    sp.add_argument("--until", default="", help="usage period end (ISO date)")
    sp.add_argument("--out", help="write to a file")

    sp = add(sub, "sample-data", "generate the sample datasets of every node", cmd_sample_data)
    sp.add_argument("--out", required=True, help="folder; one sub-folder per node")
    sp.add_argument("--seed", type=int, default=20261125, help="(default: %(default)s)")
    sp.add_argument("--scale", type=float, default=1.0, help="row-count factor (default: 1)")
    sp.add_argument("--nodes", nargs="*", help="only these node ids")

    sp = add(sub, "demo", "run the Yangtze Delta demo federation", cmd_demo)
    sp.add_argument("--workdir", help="where to put keys, data and logs (default: a temp dir)")
    sp.add_argument("--scale", type=float, default=1.0, help="sample data scale")
    sp.add_argument("--seed", type=int, default=20261125)
    sp.add_argument("--keep", action="store_true", help="leave the nodes running")
    sp.add_argument("--home", default="shanghai", help="home node for the showcase")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from federation.membership import MembershipError
    from gateway.client import ClientError
    from gateway.launcher import LaunchError

    try:
        return args.func(args)
    except ClientError as exc:
        print(f"fedgate: {exc}", file=sys.stderr)
        return 1
    except (FedgateError, LaunchError, MembershipError) as exc:
        print(f"fedgate: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    except OSError as exc:  # a path the user gave that cannot be read or written
        where = f" {exc.filename}" if exc.filename else ""
        print(f"fedgate: error:{where}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
