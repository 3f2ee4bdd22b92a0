"""``fedgate receipt``: the signed receipts owners give for each release."""

from __future__ import annotations

import argparse
from pathlib import Path

from gateway.cli.common import Subparsers, add_command, add_group, client_options, profile
from gateway.errors import FedgateError

_VERIFIED_FIELDS = (
    "request_id",
    "requester",
    "home_node",
    "dataset",
    "grant_id",
    "plan_digest",
    "result_digest",
    "groups_released",
    "l2_noise",
    "epsilon",
    "time",
)


def cmd_receipt_list(args: argparse.Namespace) -> int:
    from gateway.client import Client
    from gateway.receipts import Receipt

    with Client(profile(args)) as c:
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
    for key in _VERIFIED_FIELDS:
        print(f"  {key}: {b.get(key)}")
    return 0


def register(sub: Subparsers) -> None:
    receipt = add_group(sub, "receipt", "release receipts")
    sp = add_command(
        receipt, "list", "receipts your home node keeps for a request (operators)", cmd_receipt_list
    )
    client_options(sp)
    sp.add_argument("--request", required=True, help="request id")
    sp.add_argument("--out", help="also write each receipt into this folder")
    sp = add_command(
        receipt, "verify", "check a receipt's signature with the CA certificate", cmd_receipt_verify
    )
    sp.add_argument("file", help="receipt JSON")
    sp.add_argument("--ca", required=True, help="federation CA certificate")
