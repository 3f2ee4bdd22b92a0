"""The ``fedgate`` command, one module per command group; docs/cli.md documents each."""

from gateway.cli.app import build_parser, main

__all__ = ["build_parser", "main"]
