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


def test_the_largest_honest_receipt_fits_its_bound(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The bound on a report's receipt (lowered from 64 KiB) leaves room for the longest
    receipt an honest owner signs: a 500-character CJK purpose, escaped, names at their
    bounds and a certificate with 64-character CJK names."""
    from federation.envelope import MAX_PURPOSE_CHARS
    from gateway import identity, receipts
    from gateway.serde import REPORT_RECEIPT_CHARS

    identity.init_ca(tmp_path / "ca")
    key_pem, csr = identity.make_csr("node", "n" * 63, "机" * 64, ["127.0.0.1"])
    cert = identity.sign_csr(tmp_path / "ca", csr)
    identity.write_private(tmp_path / "k.key", key_pem)
    name = "d" * MAX_ENVELOPE_NAME
    body = {
        "kind": "release",
        "time": "2026-12-04T00:00:00Z",
        "purpose": "统" * MAX_PURPOSE_CHARS,
        "requester": "analyst:" + "户" * 64,
        "requester_org": "机" * 64,
        **{k: name for k in ("grant_id", "request_id", "owner", "home_node", "dataset")},
        **{k: name for k in ("peer", "peer_dataset", "plan_digest", "task", "step")},
        "operation": "query",
        "result_digest": "0" * 64,
        "epsilon": 1.0,
        "audit_seq": 10**12,
        "audit_hash": "0" * 64,
    }
    text = receipts.sign(body, identity.load_key(tmp_path / "k.key"), cert).to_json()
    assert len(text) < REPORT_RECEIPT_CHARS, len(text)
