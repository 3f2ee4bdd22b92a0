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


def test_a_long_runs_receipts_travel_in_batches_under_the_message_size() -> None:
    """Review (2026-12-04): three owners x 1 000 rounds of ~1.5 KB receipts made an 8.8
    MiB result, over the 4 MiB a message may be: the run was lost after every owner had
    spent. The reports now go first, in batches, and come back whole."""
    from federation.reports import OwnerReport
    from gateway import serde
    from gateway.roles.train_home import OwnerBatch, TrainResult
    from gateway.training.transfers import PIECE_BYTES

    owners = tuple(
        OwnerReport(f"node{i % 3}", receipt="r" * 1500 + str(i)) for i in range(3 * 2001)
    )
    result = TrainResult("run", b"npz", (), owners, "logreg", ("a",), "y")
    messages = serde.train_events_to_proto(result)
    assert len(messages) > 2 and all(m.ByteSize() < PIECE_BYTES for m in messages)
    got: list[OwnerReport] = []
    final = None
    for m in messages:
        event = serde.train_event_from_proto(m)
        if isinstance(event, OwnerBatch):
            got += event.owners
        else:
            final = event
    assert isinstance(final, TrainResult) and final.owners == ()
    assert tuple(got) == owners and final.model_npz == b"npz"


def test_a_reply_of_no_rows_or_no_weight_counts_as_missing() -> None:
    """Review (2026-12-04): with two owners, one claiming 0 rows had every later message
    carry the other's exact mean and std; one claiming 0 examples had the global model be
    the other's update. Such replies count as missing, as a refusal does."""
    from federation.training.client_app import METRICS, NUM_EXAMPLES, STATS
    from federation.training.server import _usable_stats, _weighted

    def stats(count: int) -> RecordDict:
        moments = {k: Array(np.zeros(2)) for k in ("shift", "sum", "sumsq")}
        return RecordDict({STATS: ArrayRecord({"count": Array(np.array(count)), **moments})})

    with server_identity():
        assert _usable_stats(Message(stats(12), 1001, "query.stats"))
        assert not _usable_stats(Message(stats(0), 1001, "query.stats"))
        assert not _usable_stats(Message(RecordDict(), 1001, "query.stats"))  # unreadable
        trained = RecordDict({METRICS: MetricRecord({NUM_EXAMPLES: 40})})
        assert _weighted(Message(trained, 1001, "train"))
        unweighted = RecordDict({METRICS: MetricRecord({NUM_EXAMPLES: 0})})
        assert not _weighted(Message(unweighted, 1001, "train"))
