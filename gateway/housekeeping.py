"""Background work on the node's own clock: checkpoints, expired grants, the CRL, probes.

Each job is a function of what it needs; ``every`` runs one in its own thread until the
node stops, and a failed round is logged and retried at the next tick.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.audit import AuditLog
from gateway.clock import now, utc
from gateway.identity import RevocationList
from gateway.policy.store import GrantStore
from gateway.transport import Transport

log = logging.getLogger("fedgate.node")

CRL_WARN_BEFORE = dt.timedelta(days=1)
CRL_WARN_EVERY = 3600.0


def every(stop: threading.Event, seconds: float, job: Callable[[], None], name: str) -> None:
    """Start ``job`` every ``seconds`` in a daemon thread until ``stop`` is set."""

    def loop() -> None:
        while not stop.wait(seconds):
            try:
                job()
            except Exception:  # keep the node up; the next round retries
                log.exception("%s round failed", name)

    threading.Thread(target=loop, name=name, daemon=True).start()


@dataclass
class CrlWatch:
    """Audits every CRL (re)load, and warns when the CRL is about to expire (then every
    call fails)."""

    revocations: RevocationList
    audit: AuditLog
    _version: tuple[int, int] | None = None
    _warned: float = field(default=-CRL_WARN_EVERY)

    def __call__(self) -> None:
        self._warn_expiry()
        self._audit_change()

    def _audit_change(self) -> None:
        # Reload if the file changed; an unusable CRL is logged at the edge, last good kept.
        with contextlib.suppress(Exception):
            self.revocations.is_revoked("0")
        version = self.revocations.version
        if version != self._version:
            self._version = version
            nxt = self.revocations.next_update
            self.audit.append(
                {
                    "kind": "crl.loaded",
                    "time": utc(),
                    "revoked": self.revocations.revoked_count,
                    "next_update": nxt.isoformat() if nxt else "",
                }
            )

    def _warn_expiry(self) -> None:
        nxt = self.revocations.next_update
        if nxt is None or nxt - now() > CRL_WARN_BEFORE:
            return
        if time.monotonic() - self._warned >= CRL_WARN_EVERY:
            self._warned = time.monotonic()
            log.warning("the CRL expires at %s UTC: re-issue it with `fedgate ca crl`", nxt)


def housekeeping(crl: CrlWatch, grants: GrantStore, audit: AuditLog) -> Callable[[], None]:
    """Checkpoints (signed heads) and expired-grant entries, on their own clock."""

    def job() -> None:
        crl()
        stamp = utc()
        grants.log_expired(stamp)
        audit.checkpoint(stamp)

    return job


def probe_peers(transport: Transport) -> Callable[[], None]:
    """Health-check every peer: keeps the peer metrics current and channels fresh."""

    def job() -> None:
        for member in transport.members():
            transport.probe(member)

    return job
