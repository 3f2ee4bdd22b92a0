"""Time as the node writes it: UTC, whole seconds, RFC 3339 with a ``Z``.

Grants, audit entries and requests compare times as strings, so every time the node
stores must be written the same way; this module is the one place that writes them.
"""

from __future__ import annotations

import datetime as dt

from gateway.errors import InvalidArgument


def now() -> dt.datetime:
    """The current time, timezone-aware in UTC (for certificates and durations)."""
    return dt.datetime.now(dt.UTC)


def utc(ts: dt.datetime | None = None) -> str:
    """``ts`` (default: now) as RFC 3339 UTC to the second, e.g. ``2025-01-31T08:00:00Z``.

    Fixed width and one zone, so that stored times order correctly as plain strings.
    """
    ts = ts or now()
    return ts.astimezone(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def parse_time(value: str, field_name: str) -> str:
    """Accept ISO dates or datetimes, store them as UTC RFC 3339 ("" stays "").

    A time without a zone is taken as UTC. Raises InvalidArgument naming ``field_name``,
    also for a time whose UTC falls outside years 1-9999 (``9999-12-31T23:59:59-05:00``:
    datetime's OverflowError would reach the caller as an internal error).
    """
    if not value:
        return ""
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidArgument(
            f"{field_name} {value[:64]!r} is not an ISO date or datetime"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    try:
        return utc(parsed)
    except OverflowError:
        raise InvalidArgument(
            f"{field_name} {value[:64]!r} is out of range: in UTC it must fall in years 1-9999"
        ) from None
