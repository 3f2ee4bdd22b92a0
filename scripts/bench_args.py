"""Command-line pieces the benchmark scripts share."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def parts_of(choices: tuple[str, ...]) -> Callable[[str], tuple[str, ...]]:
    """An argparse ``type``: ``all`` or a comma list of ``choices``."""

    def parse(text: str) -> tuple[str, ...]:
        if text == "all":
            return choices
        parts = tuple(p.strip() for p in text.split(",") if p.strip())
        if not parts or any(p not in choices for p in parts):
            raise argparse.ArgumentTypeError(
                f"parts are all or a comma list of {', '.join(choices)}: not {text!r}"
            )
        return parts

    return parse
