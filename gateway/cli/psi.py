"""``fedgate psi``: how many identifiers two owners have in common, and nothing else."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.cli.common import (
    Subparsers,
    add_command,
    client_options,
    file_name,
    path,
    profile,
    seconds,
    writable_folder,
)
from gateway.errors import FedgateError

if TYPE_CHECKING:
    from federation.psi.frames import Progress, PsiAnswer


class ProgressBar:
    """One line on stderr, rewritten in place (at most ten times a second), per stage."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._last = 0.0
        self._start = time.monotonic()

    def __call__(self, p: Progress) -> None:
        now = time.monotonic()
        if not self.enabled or (now - self._last < 0.1 and p.done < p.total):
            return
        self._last = now
        width = 30
        filled = width * p.done // p.total if p.total else width
        bar = "#" * filled + "." * (width - filled)
        print(
            f"\r{p.node_id}: {p.stage:<9} [{bar}] {100 * p.done / max(1, p.total):5.1f} % "
            f"({now - self._start:.1f} s)",
            end="",
            file=sys.stderr,
            flush=True,
        )

    def done(self) -> None:
        if self.enabled and self._last:
            print(file=sys.stderr)


def _print(answer: PsiAnswer, args: argparse.Namespace) -> None:
    from gateway import display

    if args.receipts:
        folder = Path(args.receipts)
        folder.mkdir(parents=True, exist_ok=True)
        kept = [o for o in answer.owners if o.receipt]
        for o in kept:
            (folder / (file_name(answer.request_id, o.node_id) + ".json")).write_text(o.receipt)
        print(f"{len(kept)} signed receipts in {folder}", file=sys.stderr)
    if args.format == "json":
        print(
            json.dumps(
                {
                    "request_id": answer.request_id,
                    "intersection": None if answer.suppressed else answer.intersection,
                    "suppressed": answer.suppressed,
                    "min_group_size": answer.min_group_size,
                    "epsilon_spent": answer.epsilon_spent,
                    "owners": [o.node_id for o in answer.owners],
                },
                indent=2,
            )
        )
        return
    if answer.suppressed:
        print(f"intersection: suppressed (under k = {answer.min_group_size})")
    else:
        print(f"intersection: {answer.intersection:,}")
    rows = [
        [o.node_id, o.grant_id, f"{o.epsilon:g}", "yes" if o.receipt else "-"]
        for o in answer.owners
    ]
    print(display.table(["owner", "grant", "epsilon", "receipt"], rows), file=sys.stderr)
    print(f"request {answer.request_id}", file=sys.stderr)


def _print_explain(answer: PsiAnswer) -> int:
    from gateway import display

    rows: list[list[object]] = []
    for o in answer.owners:
        if o.error is not None:
            rows.append([o.node_id, "REFUSED", "", "", "", o.error.reason])
            continue
        e = o.explanation
        if e is None:
            continue
        cols = "; ".join(f"{c}: {','.join(r)}" for c, r in e.columns.items())
        rows.append([o.node_id, "allowed", e.grant_id, e.min_group_size, f"{e.epsilon:g}", cols])
    print(display.table(["owner", "decision", "grant", "k", "epsilon", "columns / reason"], rows))
    print("\nreleased: the number of identifiers in both sets, or 'suppressed' under k")
    print(display.table(["party", "learns"], [list(p) for p in answer.learns]))
    return 0 if all(o.error is None for o in answer.owners) else 1


def cmd_psi(args: argparse.Namespace) -> int:
    from gateway.client import Client

    if args.receipts and args.explain:  # was ignored: a dry run releases no receipt
        raise FedgateError("--receipts is for an answered session, not with --explain")
    if args.receipts:
        writable_folder(args.receipts, "--receipts")
    bar = ProgressBar(sys.stderr.isatty() and not args.quiet and not args.explain)
    with Client(profile(args), timeout=args.timeout) as c:
        try:
            answer = c.psi(
                args.left,
                args.right,
                left_where=args.left_where,
                right_where=args.right_where,
                purpose=args.purpose,
                explain=args.explain,
                on_progress=bar,
            )
        finally:
            bar.done()
    if args.explain:
        return _print_explain(answer)
    _print(answer, args)
    return 0


def register(sub: Subparsers) -> None:
    sp = add_command(
        sub,
        "psi",
        "count the identifiers two owners share, without either seeing the other's (docs/psi.md)",
        cmd_psi,
    )
    client_options(sp)
    sp.add_argument("--left", required=True, help="NODE:DATASET.COLUMN (the matching owner)")
    sp.add_argument("--right", required=True, help="NODE:DATASET.COLUMN")
    sp.add_argument("--left-where", default="", help="conditions on the left dataset's columns")
    sp.add_argument("--right-where", default="", help="conditions on the right dataset's columns")
    sp.add_argument("--purpose", default="", help="purpose of use; grants may require one")
    sp.add_argument(
        "--explain", action="store_true", help="dry run: each owner's decision, who learns what"
    )
    sp.add_argument("--format", choices=["text", "json"], default="text")
    sp.add_argument(
        "--receipts", type=path, help="write each owner's signed receipt into this folder"
    )
    sp.add_argument("--quiet", action="store_true", help="no progress bar")
    sp.add_argument("--timeout", type=seconds, default=300.0, help="seconds (default 300)")
