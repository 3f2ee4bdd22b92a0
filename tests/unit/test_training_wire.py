"""The Grid's serialisation (``gateway.training.grid``): every message's bytes are
exactly Flower's own serde's, with the content the messages share serialised once."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Error, Message, MetricRecord, RecordDict

from gateway.training import grid
from gateway.training.grid import from_bytes, to_bytes, to_bytes_each
from tests.unit.training_grid import server_identity


def _content(size: int) -> RecordDict:
    return RecordDict(
        {
            "arrays": ArrayRecord(
                {"w": Array(np.arange(size, dtype=np.float64)), "b": Array(np.ones(1))}
            ),
            "config": ConfigRecord({"lr": 0.5, "round": 3, "note": "x" * 200}),
            "metrics": MetricRecord({"n": 10}),
        }
    )


@pytest.mark.parametrize("size", [0, 2_000, 300_000])  # content lengths of 2, 3, 4 varint bytes
def test_bytes_equal_flowers_for_messages_that_share_a_recorddict(size: int) -> None:
    with server_identity():
        shared = _content(size)
        messages = [Message(shared, dst_node_id=n, message_type="train") for n in (11, 12, 13)]
        messages.append(Message(_content(3), dst_node_id=14, message_type="evaluate"))
        messages.append(Message(RecordDict(), dst_node_id=15, message_type="train"))  # 1 byte
        got = to_bytes_each(messages)
    assert got == [to_bytes(m) for m in messages]
    assert from_bytes(got[1]).metadata.dst_node_id == 12


def test_a_message_with_an_error_and_one_without_content() -> None:
    with server_identity():
        ok = Message(_content(5), dst_node_id=3, message_type="train")
        failed = Message(Error(code=7, reason="no"), reply_to=ok)
    assert to_bytes_each([failed, ok]) == [to_bytes(failed), to_bytes(ok)]
    assert from_bytes(to_bytes_each([failed])[0]).error.reason == "no"


def test_shared_content_is_serialised_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = grid.recorddict_to_proto
    monkeypatch.setattr(grid, "recorddict_to_proto", lambda r: calls.append(1) or real(r))
    with server_identity():
        shared = _content(1000)
        messages = [Message(shared, dst_node_id=n, message_type="train") for n in (1, 2, 3)]
        to_bytes_each(messages)
    assert len(calls) == 1
