"""A relay's merge of its own and its cities' partials (review, 2026-12-05): it was
never size-checked (a merge over the message limit failed at gRPC's send, the cities'
receipts lost though they had spent), and a merge that failed left the cities counted as
contributors of an answer that held nothing of theirs."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa

from federation.envelope import Envelope, Requester
from federation.membership import Member, Membership
from federation.outcome import Code
from federation.partials import to_ipc
from federation.reports import OwnerReport, PartialAnswer
from gateway.roles.relay import Relay
from tests.unit.owner_parts import owner_parts

ANALYST = Requester("analyst", "li.wei@shanghai", "Shanghai Big Data Center")
MEMBERS = Membership(
    "test",
    1,
    "2026-01-01T00:00:00Z",
    (
        Member("anhui", "Anhui bureau", "127.0.0.1:1", "province"),
        Member("hefei", "H", "127.0.0.1:2", "city", parent="anhui"),
        Member("wuhu", "W", "127.0.0.1:3", "city", parent="anhui"),
    ),
)


def _env(sql: str) -> Envelope:
    return Envelope(
        request_id=f"r-{uuid.uuid4().hex[:12]}",
        requester=ANALYST,
        home_node="shanghai",
        operation="query",
        body=sql,
        deadline=time.monotonic() + 10,
    )


def _city(member: str, table: pa.Table) -> PartialAnswer:
    return PartialAnswer(member, True, to_ipc(table), (OwnerReport(member, receipt="{}"),))


def test_a_merge_over_the_message_limit_is_no_partial_and_keeps_the_receipts(
    tmp_path: Path,
) -> None:
    with owner_parts(tmp_path, max_message_bytes=128 * 1024) as parts:
        limit = parts.owner.pipeline.max_payload_bytes

        def ask(member: Member, env: Envelope) -> PartialAnswer:
            keys = [f"{member.id}-{i:06d}-" + "x" * 20 for i in range(1200)]
            answer = _city(member.id, pa.table({"city": keys, "__n": pa.array([9] * 1200)}))
            assert len(answer.payload) < limit  # each city's release passed its own check
            return answer

        with ThreadPoolExecutor(2) as pool:
            parts.owner.relay = Relay("anhui", lambda: MEMBERS, ask, pool)
            answer = parts.owner.execute(
                _env("SELECT city, COUNT(*) AS n FROM firms GROUP BY city")
            )
    assert answer.payload == b""
    cities = [r for r in answer.owners if r.node_id in ("hefei", "wuhu")]
    assert len(cities) == 2 and all(r.receipt == "{}" for r in cities)  # they did release
    for r in cities:
        assert r.error is not None and r.error.code is Code.RESOURCE_EXHAUSTED
        assert "the relay's merge of its cities' partials is" in r.error.reason
    assert not [r for r in answer.owners if r.ok]


def test_a_failed_merge_leaves_no_city_counted_as_contributor(tmp_path: Path) -> None:
    with owner_parts(tmp_path) as parts:

        def ask(member: Member, env: Envelope) -> PartialAnswer:
            table = pa.table(
                {
                    "city": ["hefei"],
                    "__n": pa.array([9], pa.int64()),
                    "__c_employees": pa.array([9], pa.int64()),
                    "__s_employees": pa.array([2**62 + 1], pa.int64()),  # two overflow
                }
            )
            return _city(member.id, table)

        with ThreadPoolExecutor(2) as pool:
            parts.owner.relay = Relay("anhui", lambda: MEMBERS, ask, pool)
            sql = "SELECT city, SUM(employees) AS s FROM firms GROUP BY city"
            answer = parts.owner.execute(_env(sql))
    assert answer.payload == b""
    assert not [r for r in answer.owners if r.ok]
    failed = {r.node_id: r for r in answer.owners}
    assert {"hefei", "wuhu", "anhui"} <= set(failed)
    assert failed["hefei"].receipt == "{}" and failed["hefei"].error is not None
    assert failed["hefei"].error.code is Code.FAILED_PRECONDITION
