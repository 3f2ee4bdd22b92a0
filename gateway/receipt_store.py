"""The owners' signed receipts a home node keeps, per request (the `receipts` table).

Kept in the same transaction as the home's own audit entry for the request, so that an
answer recorded in the log always has its receipts, and the other way round. A receipt
that is not its owner's signed release receipt for the request (junk, another request's
or owner's, a statement of another kind, a signature that does not verify) is not kept:
the home's audit entry names its owner under ``bad_receipts`` and the node logs it, so
the evidence says which owner gave none.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Mapping, Sequence

from gateway.audit import AuditLog
from gateway.clock import utc
from gateway.errors import NotFound
from gateway.receipts import ReceiptCheck
from gateway.state import State

log = logging.getLogger(__name__)

# Receipts a Receipts reply holds (their JSON), about: a long training run keeps one per
# owner and message (3 owners x 500 rounds: ~3 000 receipts of ~1.6 KB, 4.95 MB), and one
# reply of them all outgrew the message limit after the edge had counted the call OK.
PAGE_BYTES = 1024 * 1024
FRAMING_BYTES = 8  # a repeated string's tag and length on the wire, at most


class ReceiptStore:
    def __init__(self, state: State, check: ReceiptCheck) -> None:
        self._state = state
        self._check = check

    def keep(self, request_id: str, receipts: Sequence[tuple[str, str]], entry: dict) -> None:
        """``receipts`` as (owner, receipt JSON), and the home's audit ``entry``."""
        now = utc()
        # Evidence of what each owner released: it was checked in force as it arrived.
        checked = [
            (owner, r, self._check.problem(r, owner, request_id, live=False))
            for owner, r in receipts
        ]
        bad = {owner: why for owner, _, why in checked if why}
        if bad:
            entry = {**entry, "bad_receipts": bad}
            log.warning("request=%s owners gave an invalid receipt: %s", request_id, sorted(bad))
        rows = [(request_id, owner, r, now) for owner, r, why in checked if not why]

        def work(db: sqlite3.Connection) -> None:
            # never replaced: a second receipt under a kept (request, owner) is ignored
            db.executemany("INSERT OR IGNORE INTO receipts VALUES (?, ?, ?, ?)", rows)
            AuditLog.append_in(db, entry)

        # Group commit: concurrent answers share one fsync.
        self._state.group(work)

    def problem(
        self,
        receipt: str,
        owner: str,
        request_id: str,
        covering: tuple[bytes, str] | None = None,
        asked: Mapping[str, str] | None = None,
    ) -> str:
        """Why ``receipt`` is not ``owner``'s release receipt for the request ("" when it
        is): checked as a release arrives, before it is used (``covering``: the bytes and
        operation it must be the receipt of; ``asked``: what it must name as asked)."""
        return self._check.problem(receipt, owner, request_id, covering=covering, asked=asked)

    def page(
        self, request_id: str, after: int = 0, max_bytes: int = PAGE_BYTES
    ) -> tuple[list[str], int]:
        """The request's receipts after position ``after``, in the order kept, about
        ``max_bytes`` of them (at least one); and the position to ask after next (0: that
        was the last page). ``NotFound`` if the request has none."""
        out: list[str] = []
        held = last = 0
        with self._state.read() as db:
            rows = db.execute(
                "SELECT rowid, receipt FROM receipts WHERE request_id = ? AND rowid > ? "
                "ORDER BY rowid",
                (request_id, after),
            )
            for rowid, receipt in rows:
                # its bytes on the wire, not its characters: an owner's receipt is kept as
                # it was sent, and one padded with non-ASCII text made a page twice the
                # limit, which no retry got past (review, 2026-12-05)
                size = len(receipt.encode()) + FRAMING_BYTES
                if out and held + size > max_bytes:
                    return out, last
                out.append(receipt)
                held += size
                last = int(rowid)
        if not out and not after:
            raise NotFound(f"no receipts kept for request {request_id!r}")
        return out, 0

    def for_request(self, request_id: str) -> list[str]:
        """Every receipt of the request, page by page (in process: tests)."""
        out, after = self.page(request_id)
        while after:
            more, after = self.page(request_id, after)
            out.extend(more)
        return out
