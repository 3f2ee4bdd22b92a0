"""An access request's id names one request for good: 128 random bits, and a new request
is inserted, never written over another one."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from types import SimpleNamespace

import pytest

from federation.envelope import Requester
from gateway import access as access_mod
from gateway.access import ID_BYTES, ID_DRAWS, AccessDecision
from gateway.errors import Aborted
from tests.unit.test_access import ANALYST, ASK, OPERATOR, Parts, parts  # noqa: F401

OTHER = Requester("analyst", "zhang@jiangsu", "Jiangsu")
SAME = "00" * ID_BYTES


def _draws(monkeypatch: pytest.MonkeyPatch, ids: list[str]) -> None:
    """Request ids are drawn from ``ids``, in order (grant ids as ever)."""
    left: Iterator[str] = iter(ids)
    monkeypatch.setattr(access_mod, "secrets", SimpleNamespace(token_hex=lambda n: next(left)))


def test_an_id_is_128_random_bits(parts: Parts) -> None:  # noqa: F811
    req = parts.access.submit(ASK, ANALYST, "shanghai")
    assert req.id.startswith("ar-") and len(req.id) == 3 + 2 * ID_BYTES
    int(req.id[3:], 16)


def test_an_access_request_id_collision_does_not_overwrite_a_decided_request(
    parts: Parts,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Review (2026-12-05): ids were 32 bits and ``submit`` upserted, so a second request
    that drew an approved one's id replaced it (its requester, its grant id, its state)
    and the same id could be approved again."""
    _draws(monkeypatch, [SAME, SAME, "11" * ID_BYTES])
    first = parts.access.submit(ASK, ANALYST, "shanghai")
    approved = parts.access.decide(AccessDecision(first.id, True), OPERATOR)
    second = parts.access.submit(replace(ASK, purpose="other"), OTHER, "jiangsu")
    assert second.id == "ar-" + "11" * ID_BYTES and second.requester == OTHER
    assert parts.access.get(first.id) == approved  # still approved, still the analyst's
    assert approved.state == "approved" and approved.requester == ANALYST
    assert [r.id for r in parts.access.list()] == [first.id, second.id]


def test_an_id_that_keeps_colliding_is_refused_and_overwrites_nothing(
    parts: Parts,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _draws(monkeypatch, [SAME] * (1 + ID_DRAWS))
    first = parts.access.submit(ASK, ANALYST, "shanghai")
    with pytest.raises(Aborted, match="submit the request again"):
        parts.access.submit(replace(ASK, purpose="other"), OTHER, "jiangsu")
    assert parts.access.list() == [first]
    with parts.state.transaction() as db:
        kinds = [r[0] for r in db.execute("SELECT kind FROM audit WHERE kind LIKE 'access.%'")]
    assert kinds == ["access.submitted"]
