"""The receipts a home keeps (review, 2026-12-04): only each owner's own release receipt
for the request; anything else is named in the home's audit entry, not kept."""

from __future__ import annotations

import dataclasses
import json

import pytest

from gateway import receipts
from gateway.errors import InvalidArgument
from gateway.receipt_store import ReceiptStore
from gateway.receipts import ReceiptCheck
from tests.unit.test_owner import Parts, _env, _grant


def test_a_home_keeps_only_each_owners_receipt_for_the_request(parts: Parts) -> None:
    _grant(parts, exact=True)
    env = _env()
    good = parts.owner.execute(env).owners[0].receipt
    again = dataclasses.replace(_env(), request_id="r-2")
    other = parts.owner.execute(again).owners[0].receipt  # another request's, also signed
    store = ReceiptStore(parts.state, ReceiptCheck(parts.bundle))
    body = json.loads(good)
    body["body"]["groups_released"] = 99  # a relay's forgery: the signature no longer holds
    forged = json.dumps(body)
    given = [("anhui", good), ("wuhu", good), ("anhui", other), ("bengbu", "garbage")]
    given += [("anhui", forged)]
    store.keep(env.request_id, given, {"kind": "query.answered", "request_id": env.request_id})
    assert store.for_request(env.request_id) == [good]
    entry = [e for e in parts.audit.entries() if e.data["kind"] == "query.answered"][-1]
    assert entry.data["bad_receipts"] == {
        "wuhu": "it names another owner",
        "anhui": "its signature does not verify",
        "bengbu": "not a fedgate receipt: not JSON",
    }


def test_a_signed_statement_that_is_no_release_is_no_receipt(parts: Parts) -> None:
    """A node signs SecAgg+ keys and model digests with the same key: such a statement
    verified as "receipt OK" before."""
    statement = parts.owner.pipeline.signer.sign({"owner": "anhui", "kind": "secagg.keys"})
    with pytest.raises(InvalidArgument, match="not a release receipt"):
        receipts.verify(statement, parts.bundle)
    check = ReceiptCheck(parts.bundle)
    assert check.problem(statement.to_json(), "anhui", "r") == "not a release receipt"
    assert json.loads(statement.to_json())["body"]["kind"] == "secagg.keys"
