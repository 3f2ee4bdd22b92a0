"""``--column`` of grants and access requests: a column given twice is refused, in grant
add, request submit and request approve alike."""

from __future__ import annotations

import pytest

from gateway.access import AccessDecision
from gateway.cli.app import main
from gateway.cli.common import column_controls
from gateway.errors import FedgateError
from gateway.policy.model import Grant


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


def test_a_repeated_column_is_refused() -> None:
    with pytest.raises(FedgateError, match="--column 'city' is given twice"):
        column_controls(["city=group_by", "revenue=aggregate", "city=filter"])
    got = column_controls(["city=group_by,filter", "revenue=aggregate"])
    assert got == [("city", ("group_by", "filter")), ("revenue", ("aggregate",))]


@pytest.mark.parametrize(
    "argv",
    [
        ["grant", "add", "--dataset", "d", "--org", "o"],
        ["request", "submit", "--dataset", "jiangsu.d", "--purpose", "p"],
        ["request", "approve", "ar-1"],
    ],
)
def test_grant_add_and_requests_refuse_a_repeated_column(
    sent: None, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Review (2026-12-05): `--column city=group_by --column city=filter` kept only the
    last; taking both grants more than an operator who repeated one to correct it meant.
    Refused before anything is sent (exit 2)."""
    cols = ["--column", "city=group_by", "--column", "revenue=aggregate", "--column", "city=filter"]
    assert main([*argv, *cols]) == 2
    assert "--column 'city' is given twice" in capsys.readouterr().err


def test_grant_add_and_request_approve_read_train_tasks_alike(sent: None) -> None:
    """`request approve` takes `--train-tasks` and `--max-rounds` as `grant add` does (an
    approved train request wrote a grant allowing no task: review, 2026-12-05)."""
    flags = ["--train-tasks", "logreg,,mlp", "--max-rounds", "20"]
    grant = _sent(
        ["grant", "add", "--dataset", "d", "--org", "o", "--column", "x=aggregate", *flags]
    )
    decision = _sent(["request", "approve", "ar-1", *flags])
    assert isinstance(grant, Grant) and isinstance(decision, AccessDecision)
    for what in (grant, decision):
        assert what.train_tasks == ("logreg", "mlp") and what.max_rounds == 20
