"""``fedgate sample-data`` and ``fedgate demo``: the sample federation (gateway.demo)."""

from __future__ import annotations

import argparse
import signal
from pathlib import Path

from gateway.cli.common import Subparsers, add_command, path, scale_factor
from gateway.errors import InvalidArgument


def cmd_sample_data(args: argparse.Namespace) -> int:
    from gateway.demo import sample_data

    written = sample_data.generate(
        Path(args.out), seed=args.seed, scale=args.scale, nodes=args.nodes or None, progress=print
    )
    print(
        f"{sum(len(v) for v in written.values())} datasets for {len(written)} nodes in {args.out}"
    )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from gateway.demo.provision import REGION_DIR, plan
    from gateway.demo.run import run_demo

    # checked before anything is built: a typo once surfaced after the whole federation
    # was provisioned, filled and started
    _, members, _ = plan(REGION_DIR, free_ports=False)
    ids = [m.id for m in members]
    if args.home not in ids:
        raise InvalidArgument(
            f"--home {args.home!r} is not a member of the demo federation: one of {', '.join(ids)}"
        )
    try:
        return run_demo(
            workdir=Path(args.workdir) if args.workdir else None,
            scale=args.scale,
            seed=args.seed,
            keep=args.keep,
            home=args.home,
        )
    finally:
        # Every node is stopped and the folder removed: a stop that comes now, as Python
        # exits and puts back the default handlers, would only make the exit a signal's.
        for number in (signal.SIGINT, signal.SIGTERM):
            signal.signal(number, signal.SIG_IGN)


def register(sub: Subparsers) -> None:
    sp = add_command(
        sub, "sample-data", "generate the sample datasets of every node", cmd_sample_data
    )
    sp.add_argument("--out", type=path, required=True, help="folder; one sub-folder per node")
    sp.add_argument("--seed", type=int, default=20261125, help="(default: %(default)s)")
    sp.add_argument("--scale", type=scale_factor, default=1.0, help="row-count factor (default: 1)")
    sp.add_argument("--nodes", nargs="*", help="only these node ids")

    sp = add_command(sub, "demo", "run the Yangtze Delta demo federation", cmd_demo)
    sp.add_argument(
        "--workdir",
        type=path,
        help="where to put keys, data and logs, kept after (default: a temporary folder, "
        "removed at the end, with --keep too)",
    )
    sp.add_argument(
        "--scale", type=scale_factor, default=1.0, help="sample data row-count factor (default: 1)"
    )
    sp.add_argument("--seed", type=int, default=20261125)
    sp.add_argument("--keep", action="store_true", help="leave the nodes running")
    sp.add_argument(
        "--home",
        default="shanghai",
        help="home node for the showcase: any member (default: %(default)s)",
    )
