"""``fedgate ca`` and ``fedgate cert``: the federation's CA, and keys made where they live."""

from __future__ import annotations

import argparse
from pathlib import Path

from gateway.cli.common import Subparsers, add_command, add_group, days, path
from gateway.errors import FedgateError


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
    out = Path(args.out) if args.out else csr.with_suffix(".pem")
    identity.check_output(Path(args.dir), out, csr)
    pem = identity.sign_csr(Path(args.dir), csr_pem, days=args.days)
    out.write_bytes(pem)
    cert = identity.load_cert(out)
    ident = identity.identity_of(cert)
    print(f"signed {ident.role} {ident.id} ({ident.org}), serial {ident.serial}: {out}")
    hosts = identity.host_names(cert)
    if hosts:  # what the certificate lets its holder answer as: the keeper should see it
        print(f"  TLS names: {', '.join(hosts)}")
    return 0


def cmd_ca_revoke(args: argparse.Namespace) -> int:
    from gateway import identity

    if args.cert:
        cert = identity.load_cert(Path(args.cert))
        ca_cert = identity.load_cert(Path(args.dir) / identity.CA_CERT)
        if not identity.verify_signed_by(cert, [ca_cert]):
            # nodes look a certificate up in its own issuer's CRL only: listing it here
            # would revoke nothing (review, 2026-12-05: it said "revoked" all the same)
            raise FedgateError(
                f"{args.cert} was issued by {cert.issuer.rfc4514_string()!r}, not by this CA "
                f"({ca_cert.subject.rfc4514_string()!r}): revoke it with that CA's folder"
            )
        serial = cert.serial_number
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


def register(sub: Subparsers) -> None:
    ca = add_group(sub, "ca", "federation certificate authority")
    sp = add_command(
        ca, "init", "create a federation root CA (key, certificate, empty CRL)", cmd_ca_init
    )
    sp.add_argument("--dir", type=path, required=True, help="CA folder (created)")
    sp.add_argument(
        "--name",
        default="Yangtze Delta Federation CA",
        help="CA common name (default: %(default)s)",
    )
    sp.add_argument("--days", type=days, default=3650, help="validity (default: %(default)s)")
    sp = add_command(
        ca, "sign", "sign a CSR into a certificate carrying role, id and org", cmd_ca_sign
    )
    sp.add_argument(
        "csr",
        type=path,
    )
    sp.add_argument("--dir", type=path, required=True, help="CA folder")
    sp.add_argument("--days", type=days, default=365, help="validity (default: %(default)s)")
    sp.add_argument("--out", type=path, help="certificate file (default: CSR name with .pem)")
    sp = add_command(ca, "revoke", "revoke a certificate and re-issue the CRL", cmd_ca_revoke)
    sp.add_argument("--dir", type=path, required=True, help="CA folder")
    which = sp.add_mutually_exclusive_group(required=True)
    which.add_argument("--cert", type=path, help="certificate file to revoke")
    which.add_argument("--serial", help="serial number (hex) to revoke")
    sp = add_command(
        ca, "crl", "re-issue the CRL (nodes refuse callers once it expires)", cmd_ca_crl
    )
    sp.add_argument("--dir", type=path, required=True, help="CA folder")
    sp.add_argument("--days", type=days, default=7, help="validity in days (default 7)")

    cert = add_group(sub, "cert", "keys and certificate requests")
    sp = add_command(
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
    sp.add_argument("--out-dir", type=path, default=".", help="folder for KEY and CSR")
    sp.add_argument("--name", help="file stem (default: the id)")
    sp = add_command(cert, "show", "print the identity a certificate carries", cmd_cert_show)
    sp.add_argument(
        "cert",
        type=path,
    )
