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


def path(value: str) -> str:
    """The argparse type of an option or argument that names a file or folder: the value
    as given. It marks what ``main`` does not hold to UTF-8 (a file name may be any bytes,
    and is read or written here, never sent); every other text argument must be UTF-8."""
    return value


MAX_SCALE = 1000.0  # 20 million rows of a province's insurance data, ~ GBs in memory


def scale_factor(value: str) -> float:
    """A positive row-count factor of at most ``MAX_SCALE``, refused before anything is
    written (1e9 was a traceback from numpy, unable to allocate the rows)."""
    try:
        scale = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not (math.isfinite(scale) and 0 < scale <= MAX_SCALE):
        raise argparse.ArgumentTypeError(
            f"must be a positive number of at most {MAX_SCALE:g}, got {value}"
        )
    return scale


def whole(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: a whole number in [low, high], refused by the parser (a number
    past the wire's field once ended in a traceback from building the message)."""

    def parse(value: str) -> int:
        try:
            n = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None
        if not low <= n <= high:
            raise argparse.ArgumentTypeError(f"must be {low} to {high}, got {n}")
        return n

    return parse


def seconds(value: str, most: float | None = None) -> float:
    """An argparse type for a timeout: positive and finite (at most a day, or ``most``); 0,
    a negative number, inf or NaN were sent on and came back DEADLINE_EXCEEDED at once."""
    most = MAX_SECONDS if most is None else most
    try:
        n = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {value!r}") from None
    if not (math.isfinite(n) and 0 < n <= most):
        raise argparse.ArgumentTypeError(f"must be more than 0 and at most {most:g} seconds")
    return n


def seconds_or_zero(value: str, most: float | None = None) -> float:
    """``seconds``, or 0 for "the default" (as a number: "0.00", "0e0" and "-0" too)."""
    try:
        zero = float(value) == 0
    except ValueError:
        zero = False  # ``seconds`` names it
    return 0.0 if zero else seconds(value, most)


MAX_SECONDS = 86_400.0
INT32 = 2**31 - 1
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


def file_name(*parts: str) -> str:
    """A file name made of ids a server sent (a request id, a node id): only letters,
    digits, ``.``, ``_`` and ``-`` are kept, so no id can lead outside the folder
    (review, 2026-12-04: an absolute "request id" wrote anywhere)."""
    name = "-".join(parts)
    safe = "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "_" for c in name)
    return safe.lstrip(".") or "_"


def writable_folder(path: str, option: str) -> Path:
    """``--out DIR``-like options, checked before the work they would hold is done (a
    run trained, a DP answer spent, and then nowhere to put it)."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise FedgateError(f"{option} {path} is a file, not a folder")
    existing = next((p for p in (folder, *folder.absolute().parents) if p.exists()), None)
    if existing is None or not existing.is_dir():
        raise FedgateError(f"{option} {path}: no folder to create it in")
    if not os.access(existing, os.W_OK):
        where = "in it" if existing == folder else f"under {existing}"
        raise FedgateError(f"{option} {path}: cannot write {where}")
    return folder


def writable_file(path: str, option: str) -> Path:
    """``--out FILE``: its folder must exist; the file itself is replaced."""
    file = Path(path)
    if file.is_dir():
        raise FedgateError(f"{option} {path} is a folder, not a file")
    if not file.parent.is_dir():
        raise FedgateError(f"{option} {path}: no folder {file.parent} to write it in")
    if not os.access(file.parent, os.W_OK):
        raise FedgateError(f"{option} {path}: cannot write in {file.parent}")
    return file


def client_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--profile", type=path, help="client profile (default: $FEDGATE_PROFILE)")


def profile(args: argparse.Namespace) -> Profile:
    from gateway.client import Profile

    path = args.profile or os.environ.get("FEDGATE_PROFILE")
    if not path:
        raise FedgateError("no profile: pass --profile FILE or set FEDGATE_PROFILE")
    if not Path(path).exists():  # say where profiles are (a newcomer's docs path was not)
        from gateway.cli.membership import DEFAULT_REGIONS

        raise FedgateError(
            f"profile {path} does not exist: `fedgate demo --workdir DIR` writes the demo's "
            "profiles to DIR/profiles (without --workdir, to a temporary folder it prints "
            "and removes when it ends), `fedgate federation init` to <its --workdir>/profiles "
            f"(by default {DEFAULT_REGIONS.parent / '.fedgate' / 'profiles'})"
        )
    return Profile.load(Path(path))


def column_controls(specs: list[str]) -> list[tuple[str, tuple[str, ...]]]:
    """``--column name=control[,control]`` options, as grants and access requests take them:
    (column, controls) pairs in the order given. A column given twice is refused: the later
    one silently replaced the earlier, and taking both would grant more than an operator
    who repeated it to correct the first meant (review, 2026-12-05); the server refuses a
    repeated column in an approval likewise."""
    out: dict[str, tuple[str, ...]] = {}
    for spec in specs:
        name, sep, controls = spec.partition("=")
        if not sep or not controls:
            raise FedgateError(f"--column {spec!r} must look like name=control[,control]")
        if name in out:
            raise FedgateError(
                f"--column {name!r} is given twice: give all its controls once, "
                f"comma-separated ({name}=group_by,filter)"
            )
        out[name] = tuple(controls.split(","))
    return list(out.items())


def train_tasks(value: str) -> tuple[str, ...]:
    """``--train-tasks a,b`` (``grant add``, ``request approve``): the tasks named, in
    order; the owner checks each is a built-in task (or an approved app's)."""
    return tuple(t for t in value.split(",") if t)


def add_train_limits(sp: argparse.ArgumentParser) -> None:
    """``--train-tasks`` and ``--max-rounds``, as a grant and an approval take them."""
    sp.add_argument(
        "--train-tasks",
        type=train_tasks,
        default=(),
        help="ops train: the tasks allowed (logreg,..., or app:<digest> of an approved app)",
    )
    sp.add_argument(
        "--max-rounds", type=whole(0, INT32), default=0, help="ops train: rounds a run (0: any)"
    )


def print_message(msg: Message) -> None:
    """A reply as indented JSON with the proto's own field names."""
    from google.protobuf import json_format

    print(json_format.MessageToJson(msg, preserving_proto_field_name=True, indent=2))
