"""The ``fedgate`` command: command modules that each register their groups (`app.py`
wires them); docs/cli.md documents each."""

from gateway.cli.app import build_parser, main

__all__ = ["build_parser", "main"]
