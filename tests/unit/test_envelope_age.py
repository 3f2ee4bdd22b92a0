"""An envelope's signed time: owners refuse old ones, and so forget released requests."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from federation.envelope import CLOCK_SKEW_SECONDS, MAX_AGE_SECONDS, Envelope, Requester
from gateway.clock import utc
from gateway.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from gateway.policy.store import GrantStore
from gateway.roles.vouching import check_fresh
from gateway.state import State

NOW = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.UTC)


def _env(issued_at: str) -> Envelope:
    who = Requester("analyst", "a@x", "X")
    return Envelope("r1", who, "home", "query", "SELECT 1", issued_at=issued_at)


@pytest.mark.parametrize(
    "offset", [0, MAX_AGE_SECONDS - 1, -CLOCK_SKEW_SECONDS + 1], ids=["now", "old", "ahead"]
)
def test_an_envelope_within_its_age_is_taken(offset: int) -> None:
    check_fresh(_env(utc(NOW - dt.timedelta(seconds=offset))), NOW)


@pytest.mark.parametrize(
    ("issued_at", "error", "words"),
    [
        ("", PermissionDenied, "carries no time"),
        ("yesterday", InvalidArgument, "is not an ISO date or datetime"),
        ("9999-12-31T23:59:59-05:00", InvalidArgument, "out of range"),
        ("0001-01-01T00:00:00+05:00", InvalidArgument, "out of range"),
        (utc(NOW - dt.timedelta(seconds=MAX_AGE_SECONDS + 1)), FailedPrecondition, "60 minutes"),
        (utc(NOW + dt.timedelta(seconds=CLOCK_SKEW_SECONDS + 1)), FailedPrecondition, "future"),
    ],
)
def test_a_stale_future_or_missing_time_is_refused(
    issued_at: str, error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=words):
        check_fresh(_env(issued_at), NOW)


def test_the_signed_fields_hold_the_time() -> None:
    assert _env("2026-12-04T12:00:00Z").vouched()["issued_at"] == "2026-12-04T12:00:00Z"


def test_released_requests_are_forgotten_after_their_envelopes_age(tmp_path: Path) -> None:
    state = State(tmp_path / "s.sqlite3")
    try:
        with state.transaction() as db:
            db.execute("INSERT INTO released_requests VALUES ('h', 'old', '2026-12-04T09:00:00Z')")
            db.execute("INSERT INTO released_requests VALUES ('h', 'new', '2026-12-04T11:30:00Z')")
        assert GrantStore(state).forget_released("2026-12-04T10:50:00Z") == 1
        with state.transaction() as db:
            left = [r[0] for r in db.execute("SELECT request_id FROM released_requests")]
        assert left == ["new"]
    finally:
        state.close()
