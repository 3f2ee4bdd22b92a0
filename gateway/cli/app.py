"""The ``fedgate`` command: one parser wired from the command modules, one error policy.

Errors are printed as one line naming what is wrong (never a traceback) and give a
non-zero exit: 2 for bad input or configuration, 1 for a refused or failed RPC.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from gateway.cli import (
    audit,
    catalog,
    custom_app,
    demo,
    disclosure,
    grant,
    membership,
    node,
    pki,
    psi,
    query,
    receipt,
    request,
    train,
)
from gateway.errors import FedgateError

# In this order in `fedgate --help`.
COMMAND_MODULES = (
    pki,
    membership,
    node,
    catalog,
    query,
    psi,
    train,
    custom_app,
    grant,
    receipt,
    audit,
    request,
    disclosure,
    demo,
)


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
    for module in COMMAND_MODULES:
        module.register(sub)
    return p


# Arguments that travel in a message (paths do not: a non-UTF-8 file name is legal).
_SENT = (
    "sql", "purpose", "note", "left", "right", "left_where", "right_where", "features",
    "label", "dataset", "nodes", "user", "org", "node", "user_org", "column", "name",
)  # fmt: skip


def _not_text(args: argparse.Namespace) -> str | None:
    """The first sent argument that is not text: bytes that are not UTF-8 on the command
    line arrive as lone surrogates, which no message can carry."""
    for name in _SENT:
        value = getattr(args, name, None)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str):
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    return name if name == "sql" else "--" + name.replace("_", "-")
    return None


# The commands that run nodes (their processes inherit the environment).
_SERVING = frozenset({"node", "demo"})


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    bad = _not_text(args)
    if bad is not None:
        print(f"fedgate: error: {bad} is not UTF-8 text", file=sys.stderr)
        return 2
    verbosity = os.environ.get("GRPC_VERBOSITY")
    if args.command not in _SERVING and not verbosity:
        # A client's gRPC would print its own log lines (a failed TLS handshake) above
        # our one line that says the same; a node keeps them (security.md: logged).
        os.environ["GRPC_VERBOSITY"] = "NONE"
    try:
        return _run(args)
    finally:  # main() called in-process (tests) leaves the environment as it found it
        if verbosity is None:
            os.environ.pop("GRPC_VERBOSITY", None)
        else:
            os.environ["GRPC_VERBOSITY"] = verbosity


def _run(args: argparse.Namespace) -> int:
    from federation.membership import MembershipError
    from federation.partials import PartialError
    from gateway.client import ClientError
    from gateway.demo.launcher import LaunchError
    from gateway.text import shown

    try:
        code: int = args.func(args)
        sys.stdout.flush()  # a reader that went away shows here, not at the exit's flush
        return code
    except ClientError as exc:  # a node's text: escaped, it cannot drive the terminal
        print(f"fedgate: {shown(str(exc))}", file=sys.stderr)
        return 1
    except (FedgateError, LaunchError, MembershipError) as exc:
        print(f"fedgate: error: {exc}", file=sys.stderr)
        return 2
    except PartialError as exc:  # an answer the home sent that this client does not decode
        print(f"fedgate: error: the answer cannot be read: {shown(str(exc))}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `fedgate ... | head`: the reader has what it wanted
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that the exit's flush has nothing to say
        os.close(devnull)
        return 0
    except OSError as exc:  # a path the user gave that cannot be read or written
        where = f" {exc.filename}:" if exc.filename else ""
        print(f"fedgate: error:{where} {exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
