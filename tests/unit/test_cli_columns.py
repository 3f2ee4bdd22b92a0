"""``--column`` of grants and access requests: a column given twice gets the controls of
both, in grant add, request submit and request approve alike."""

from __future__ import annotations

import pytest

from gateway.cli.app import main
from gateway.cli.common import column_controls


class _Sent(Exception):
    """What the command would have sent, caught instead of connecting."""


class _Client:
    def __init__(self, *_: object, **__: object) -> None:
        pass

    def __enter__(self) -> _Client:
        return self

    def __exit__(self, *_: object) -> None:
        pass

    def _send(self, what: object) -> None:
        raise _Sent(what)

    add_grant = submit_access_request = decide_access_request = _send


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> None:
    import gateway.client
    from gateway.cli import grant, request

    monkeypatch.setattr(gateway.client, "Client", _Client)
    for module in (grant, request):
        monkeypatch.setattr(module, "profile", lambda _args: None)


def _sent(argv: list[str]) -> object:
    with pytest.raises(_Sent) as caught:
        main(argv)
    return caught.value.args[0]


def test_a_repeated_column_gets_the_controls_of_both() -> None:
    got = column_controls(
        ["city=group_by", "revenue=aggregate", "city=filter,group_by", "city=raw"]
    )
    assert got == [("city", ("group_by", "filter", "raw")), ("revenue", ("aggregate",))]


def test_grant_add_merges_a_repeated_column(sent: None) -> None:
    # review (2026-12-05): `--column city=group_by --column city=filter` kept only filter
    argv = ["grant", "add", "--dataset", "d", "--org", "o"]
    g = _sent([*argv, "--column", "city=group_by", "--column", "city=filter"])
    assert g.columns == {"city": ("group_by", "filter")}  # type: ignore[attr-defined]


def test_request_submit_and_approve_merge_a_repeated_column(sent: None) -> None:
    from gateway.access import ColumnControls

    cols = ["--column", "city=group_by", "--column", "revenue=aggregate", "--column", "city=filter"]
    want = (
        ColumnControls("city", ("group_by", "filter")),
        ColumnControls("revenue", ("aggregate",)),
    )
    ask = _sent(["request", "submit", "--dataset", "jiangsu.d", "--purpose", "p", *cols])
    assert ask.columns == want  # type: ignore[attr-defined]
    decision = _sent(["request", "approve", "ar-1", *cols])
    assert decision.columns == want  # type: ignore[attr-defined]
