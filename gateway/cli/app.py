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
from gateway.cli.common import path
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


def _actions(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[argparse.Action]:
    """The arguments of the command that was parsed: the top level's, its command's and
    (for a group) its action's."""
    actions: list[argparse.Action] = []
    while True:
        actions.extend(parser._actions)
        sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
        if sub is None:
            return actions
        parser = sub.choices[getattr(args, sub.dest)]


def _not_text(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str | None:
    """The first argument that is not text: bytes that are not UTF-8 on the command line
    arrive as lone surrogates, which no message (and no terminal) can carry. Every
    argument is held to it but a path (``type=path``): a file name may be any bytes."""
    by_dest = {a.dest: a for a in _actions(parser, args)}
    for dest, value in vars(args).items():
        action = by_dest.get(dest)
        if action is not None and action.type is path:
            continue
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str):
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    if action is not None and action.option_strings:
                        return action.option_strings[0]
                    return dest
    return None


# The commands that run nodes (their processes inherit the environment).
_SERVING = frozenset({"node", "demo"})


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    bad = _not_text(parser, args)
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
