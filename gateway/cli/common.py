"""What every command module shares: how commands are added, client options, output."""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from gateway.errors import FedgateError

if TYPE_CHECKING:  # imported where used, so that `fedgate --help` stays quick
    from google.protobuf.message import Message

    from gateway.client import Profile

Handler: TypeAlias = Callable[[argparse.Namespace], int]
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def add_command(
    parent: Subparsers, name: str, help_: str, func: Handler
) -> argparse.ArgumentParser:
    """A (sub-)command whose help line is also its description; ``main`` calls ``func``."""
    sp = parent.add_parser(name, help=help_, description=help_)
    sp.set_defaults(func=func)
    return sp


def add_group(parent: Subparsers, name: str, help_: str) -> Subparsers:
    """A command made of actions (``fedgate NAME ACTION``); the action lands in NAME_command."""
    return parent.add_parser(name, help=help_, description=help_).add_subparsers(
        dest=f"{name}_command", required=True, metavar="ACTION"
    )


def scale_factor(value: str) -> float:
    """A positive, finite row-count factor, refused before anything is written."""
    try:
        scale = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not math.isfinite(scale) or scale <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {value}")
    return scale


MAX_DAYS = 36_500  # a hundred years: past that X.509's dates run out


def days(value: str) -> int:
    """A validity in whole days, refused by the parser unless 1 to ``MAX_DAYS``."""
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of days: {value!r}") from None
    if not 1 <= n <= MAX_DAYS:
        raise argparse.ArgumentTypeError(f"must be 1 to {MAX_DAYS} days, got {n}")
    return n


def client_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--profile", help="client profile (default: $FEDGATE_PROFILE)")


def profile(args: argparse.Namespace) -> Profile:
    from gateway.client import Profile

    path = args.profile or os.environ.get("FEDGATE_PROFILE")
    if not path:
        raise FedgateError("no profile: pass --profile FILE or set FEDGATE_PROFILE")
    return Profile.load(Path(path))


def column_controls(specs: list[str]) -> list[tuple[str, tuple[str, ...]]]:
    """``--column name=control[,control]`` options, as grants and access requests take them:
    (column, controls) pairs in the order given."""
    out = []
    for spec in specs:
        name, sep, controls = spec.partition("=")
        if not sep or not controls:
            raise FedgateError(f"--column {spec!r} must look like name=control[,control]")
        out.append((name, tuple(controls.split(","))))
    return out


def print_message(msg: Message) -> None:
    """A reply as indented JSON with the proto's own field names."""
    from google.protobuf import json_format

    print(json_format.MessageToJson(msg, preserving_proto_field_name=True, indent=2))
