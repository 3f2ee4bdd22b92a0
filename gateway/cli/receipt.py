"""``fedgate receipt``: the signed receipts owners give for each release."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.cli.common import (
    Subparsers,
    add_command,
    add_group,
    client_options,
    file_name,
    path,
    profile,
)
from gateway.errors import FedgateError

if TYPE_CHECKING:
    from gateway.receipts import Receipt

# What ``receipt verify`` prints of a receipt: the fields its operation has, in this order
_VERIFIED_FIELDS = (
    "request_id",
    "operation",
    "requester",
    "home_node",
    "dataset",
    "grant_id",
    "plan_digest",
    "result_digest",
    "groups_released",
    "l2_noise",
    "role",
    "peer",
    "peer_dataset",
    "intersection",
    "task",
    "step",
    "round",
    "examples",
    "epsilon",
    "time",
)


def released(body: dict[str, Any]) -> str:
    """What one receipt says its owner released, in the words of its operation."""
    op = body.get("operation")
    if op == "train":
        return f"{body.get('task')} {body.get('step')}, round {body.get('round')}"
    if op == "psi":
        what = f"{body.get('role')} with {body.get('peer')}.{body.get('peer_dataset')}"
        if "groups_released" in body:
            what += f", {_groups(body['groups_released'])}"
        return what
    return _groups(body.get("groups_released"))


def _groups(n: object) -> str:
    return "1 group" if n == 1 else f"{n} groups"


def receipt_files(request: str, kept: list[Receipt]) -> list[str]:
    """File names for ``--out``: ``<request>-<owner>.json``, numbered in the order kept
    (``<request>-<owner>-0001.json``, ...) for an owner of several (a training run)."""
    per_owner = Counter(r.owner for r in kept)
    seen: Counter[str] = Counter()
    names = []
    for r in kept:
        seen[r.owner] += 1
        n = f"-{seen[r.owner]:04d}" if per_owner[r.owner] > 1 else ""
        names.append(file_name(request, r.owner) + f"{n}.json")
    return names


def cmd_receipt_list(args: argparse.Namespace) -> int:
    """Each receipt checked as ``receipt verify`` does (and that it names this request):
    a bad one is shown as such on its own line, the others still listed. Exit 1 if any
    is bad."""
    from gateway import identity, receipts
    from gateway.client import Client
    from gateway.receipts import Receipt

    prof = profile(args)
    with Client(prof) as c:
        texts = c.receipts(args.request)
    bundle = identity.load_bundle(prof.ca)
    kept: list[Receipt] = []
    bad = 0
    for i, text in enumerate(texts, 1):
        try:
            r = Receipt.from_json(text)
            receipts.verify(r, bundle)
            if r.body.get("request_id") != args.request:
                raise FedgateError("it names another request")
        except FedgateError as exc:
            print(f"receipt {i}: NOT VALID: {exc}")
            bad += 1
            continue
        kept.append(r)
    kept.sort(key=lambda r: r.owner)  # grouped by owner, each in the order kept (stable)
    folder = Path(args.out) if args.out else None
    if folder:
        folder.mkdir(parents=True, exist_ok=True)
    for r, name in zip(kept, receipt_files(args.request, kept), strict=True):
        b = r.body
        print(
            f"{r.owner}: {b.get('dataset')} grant {b.get('grant_id')}, {released(b)}, "
            f"epsilon {b.get('epsilon')}, audit entry {b.get('audit_seq')}"
        )
        if folder:
            (folder / name).write_text(r.to_json())
    return 1 if bad else 0


def cmd_receipt_verify(args: argparse.Namespace) -> int:
    from gateway import identity, receipts

    try:
        text = Path(args.file).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FedgateError(f"receipt file {args.file} does not exist") from None
    except UnicodeDecodeError:
        raise FedgateError(f"receipt file {args.file} is not a receipt (not UTF-8 text)") from None
    receipt = receipts.Receipt.from_json(text)
    signer = receipts.verify(receipt, identity.load_bundle(Path(args.ca)))
    b = receipt.body
    print(f"receipt OK: signed by node {signer}")
    for key in _VERIFIED_FIELDS:
        if key in b:  # a PSI or training receipt has no plan digest, a query no role
            print(f"  {key}: {b[key]}")
    return 0


def register(sub: Subparsers) -> None:
    receipt = add_group(sub, "receipt", "release receipts")
    sp = add_command(
        receipt, "list", "receipts your home node keeps for a request (operators)", cmd_receipt_list
    )
    client_options(sp)
    sp.add_argument("--request", required=True, help="request id")
    sp.add_argument("--out", type=path, help="also write each receipt into this folder")
    sp = add_command(
        receipt, "verify", "check a receipt's signature with the CA certificate", cmd_receipt_verify
    )
    sp.add_argument("file", type=path, help="receipt JSON")
    sp.add_argument("--ca", type=path, required=True, help="federation CA certificate")
