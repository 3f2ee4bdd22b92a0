"""``fedgate node``: run one gateway node."""

from __future__ import annotations

import argparse
from pathlib import Path

from gateway.cli.common import Subparsers, add_command, add_group, path


def cmd_node_start(args: argparse.Namespace) -> int:
    from gateway import config
    from gateway.node import run

    cfg = config.load(Path(args.config))
    return run(cfg)


def register(sub: Subparsers) -> None:
    node = add_group(sub, "node", "run a gateway node")
    sp = add_command(node, "start", "run one node until SIGTERM/Ctrl-C", cmd_node_start)
    sp.add_argument(
        "--config", type=path, required=True, help="node config (TOML, see docs/config.md)"
    )
