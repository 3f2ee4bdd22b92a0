"""An envelope's names are bounded when decoded (review, 2026-12-04: a member sending a
1.5 MB request id and requester grew another node's audit log by 9 MB in 3 refusals)."""

from __future__ import annotations

import time

import pytest

from gateway.errors import InvalidArgument
from gateway.rpc.v1 import common_pb2, peer_pb2
from gateway.serde import MAX_ENVELOPE_NAME, envelope_from_proto


def _msg(**changes: object) -> peer_pb2.PartialRequest:
    fields: dict = {
        "request_id": "0" * 32,
        "home_node": "shanghai",
        "sql": "SELECT COUNT(*) FROM t",
        "requester": common_pb2.Requester(role="analyst", id="li.wei@shanghai", org="SBDC"),
    }
    return peer_pb2.PartialRequest(**(fields | changes))


def test_an_ordinary_envelope_decodes() -> None:
    env = envelope_from_proto(_msg(), time.monotonic() + 5)
    assert env.request_id == "0" * 32 and env.requester.org == "SBDC"


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"request_id": "r" * 1_500_000}, "request id"),
        ({"home_node": "h" * (MAX_ENVELOPE_NAME + 1)}, "home node"),
        ({"requester": common_pb2.Requester(role="analyst", id="x" * 10**6, org="o")}, "id"),
        ({"requester": common_pb2.Requester(role="analyst", id="x", org="o" * 10**5)}, "organ"),
        ({"path": ["n"] * 17}, "path"),
        ({"purpose": "p" * 501}, "purpose"),
    ],
)
def test_a_name_past_its_bound_is_refused_before_anything(changes: dict, words: str) -> None:
    with pytest.raises(InvalidArgument, match=words):
        envelope_from_proto(_msg(**changes), time.monotonic() + 5)


def test_an_owners_report_is_bounded_when_decoded() -> None:
    """Review (2026-12-04): a 4 MB refusal reason went whole into the home's audit log on
    every query, and a report's receipt had no bound."""
    from gateway.serde import REPORT_REASON_CHARS, REPORT_RECEIPT_CHARS, owner_report_from_proto

    msg = common_pb2.OwnerResult(
        node_id="n" * 10_000, ok=False, error="x" * 4_000_000, receipt="r" * 1_000_000
    )
    report = owner_report_from_proto(msg)
    assert report.error is not None and len(report.error.reason) < REPORT_REASON_CHARS + 50
    assert len(report.receipt) == REPORT_RECEIPT_CHARS
    assert len(report.node_id) < MAX_ENVELOPE_NAME + 50
