"""``fedgate app``: operators approve, list and revoke the custom training apps their node
may run; anyone prints an app folder's digest (docs/training.md, custom apps)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.cli.common import Subparsers, add_command, add_group, client_options, path, profile
from gateway.errors import InvalidArgument

if TYPE_CHECKING:
    from federation.training.app_bundle import AppBundle

_HEADERS = ["digest", "name", "files", "bytes", "approved by", "approved at"]


def read_app(folder: str) -> AppBundle:
    from federation.training.app_bundle import read_dir
    from federation.training.errors import TrainingError

    try:
        return read_dir(Path(folder))
    except TrainingError as exc:
        raise InvalidArgument(exc.reason) from None


def cmd_app_digest(args: argparse.Namespace) -> int:
    from federation.training.app_bundle import task_of

    bundle = read_app(args.folder)
    print(bundle.digest)
    print(f"(a grant allows it as --train-tasks {task_of(bundle.digest)})")
    return 0


def cmd_app_approve(args: argparse.Namespace) -> int:
    from federation.training.app_bundle import task_of
    from gateway.client import Client

    bundle = read_app(args.folder)
    with Client(profile(args)) as c:
        app = c.approve_app(bundle, args.name or Path(args.folder).resolve().name)
    print(f"approved {app.name}: {app.digest} ({app.files} files, {app.size:,} bytes)")
    print(f"a grant allows it with --train-tasks {task_of(app.digest)}")
    return 0


def cmd_app_list(args: argparse.Namespace) -> int:
    from gateway import display
    from gateway.client import Client

    with Client(profile(args)) as c:
        apps = c.list_apps()
    rows = [[a.digest, a.name, a.files, a.size, a.approved_by, a.approved_at] for a in apps]
    print(display.table(_HEADERS, rows))
    return 0


def cmd_app_revoke(args: argparse.Namespace) -> int:
    from gateway.client import Client

    with Client(profile(args)) as c:
        app = c.revoke_app(args.digest)
    print(f"revoked {app.name}: {app.digest}; runs naming it are refused from now on")
    return 0


def register(sub: Subparsers) -> None:
    group = add_group(sub, "app", "custom training apps your node may run (operators)")
    sp = add_command(
        group, "approve", "store an app folder you reviewed; runs may then use it", cmd_app_approve
    )
    client_options(sp)
    sp.add_argument(
        "folder", type=path, help="the app's folder (client_app.py defining app and init)"
    )
    sp.add_argument("--name", default="", help="a label (default: the folder's name)")
    sp = add_command(group, "list", "the apps your node approved", cmd_app_list)
    client_options(sp)
    sp = add_command(group, "revoke", "withdraw an approval; its runs stop", cmd_app_revoke)
    client_options(sp)
    sp.add_argument("digest")
    sp = add_command(group, "digest", "print an app folder's digest (no node)", cmd_app_digest)
    sp.add_argument(
        "folder",
        type=path,
    )
