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
from tests.unit.owner_parts import OwnerParts, owner_parts

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


def _env(sql: str, home: str = "shanghai") -> Envelope:
    return Envelope(
        request_id=f"r-{uuid.uuid4().hex[:12]}",
        requester=ANALYST,
        home_node=home,
        operation="query",
        body=sql,
        deadline=time.monotonic() + 10,
    )


def _city(member: str, table: pa.Table) -> PartialAnswer:
    return PartialAnswer(member, True, to_ipc(table), (OwnerReport(member, receipt="{}"),))


def _big_cities(parts: OwnerParts, rows: dict[str, int], home: str = "shanghai") -> PartialAnswer:
    """The relay's answer where each city sends ``rows[city]`` groups of its own."""

    def ask(member: Member, env: Envelope) -> PartialAnswer:
        n = rows[member.id]
        if not n:
            return PartialAnswer(member.id, False)  # it holds no such dataset
        keys = [f"{member.id}-{i:06d}-" + "x" * 20 for i in range(n)]
        return _city(member.id, pa.table({"city": keys, "__n": pa.array([9] * n)}))

    with ThreadPoolExecutor(2) as pool:
        parts.owner.relay = Relay("anhui", lambda: MEMBERS, ask, pool)
        sql = "SELECT city, COUNT(*) AS n FROM firms GROUP BY city"
        return parts.owner.execute(_env(sql, home))


def test_a_merge_over_the_message_limit_is_no_partial_and_keeps_the_receipts(
    tmp_path: Path,
) -> None:
    with owner_parts(tmp_path, max_message_bytes=128 * 1024) as parts:
        answer = _big_cities(parts, {"hefei": 1200, "wuhu": 1200})  # each fits, not both
        # the relay's own home merges further (a LIMIT may make its answer small): not
        # sent, not refused here; the home checks its own answer
        at_home = _big_cities(parts, {"hefei": 1200, "wuhu": 1200}, home="anhui")
        # one city's partial passed on as it is, but larger than the relay may send
        passed_on = _big_cities(parts, {"hefei": 2000, "wuhu": 0})
    assert answer.payload == b""
    assert answer.owners[0].node_id == "anhui"  # the status names the relay, not a city
    cities = [r for r in answer.owners if r.node_id in ("hefei", "wuhu")]
    assert len(cities) == 2 and all(r.receipt == "{}" for r in cities)  # they did release
    for r in cities:
        assert r.error is not None and r.error.code is Code.RESOURCE_EXHAUSTED
        assert "the relay's partial of its own and its cities' is" in r.error.reason
    assert not [r for r in answer.owners if r.ok]
    assert at_home.payload and [r.node_id for r in at_home.owners if r.ok] == ["hefei", "wuhu"]
    hefei = [r for r in passed_on.owners if r.node_id == "hefei"]
    assert passed_on.payload == b"" and hefei[0].error is not None
    assert hefei[0].error.code is Code.RESOURCE_EXHAUSTED


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
