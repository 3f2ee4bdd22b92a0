"""The matcher's noisy tally leaves it for the other owner before the matcher releases
(review, 2026-12-05): a session that then ended (the other owner refusing, or hanging up,
after each tally) was a free ``psi.refused``, so the other owner collected fresh noisy
counts of the matcher's under a DP grant of budget 3 with ε = 1 as often as it liked
(49, 50, 52, 51, 50; epsilon_spent 0). Now every end after the tally is a ``release``
entry with ``withheld``, its epsilon spent, as a noised result too large or too late."""

from __future__ import annotations

import time
import types
import uuid
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from federation.envelope import Envelope, Requester
from federation.outcome import Code, Error
from federation.psi import frames as f
from federation.psi import group
from federation.reports import OwnerReport
from gateway.descriptor import ColumnSpec, DatasetDescriptor
from gateway.errors import FedgateError
from gateway.planning import join_or_refuse
from gateway.psi_sessions import PsiSessions
from gateway.roles import psi_owner as po
from tests.unit.owner_parts import OPERATOR, OwnerParts, org_grant, owner_parts

ORG = "Shanghai Big Data Center"
ANALYST = Requester("analyst", "li.wei@shanghai", ORG)
SQL = "SELECT COUNT(*) AS intersection FROM anhui.l l JOIN jiangsu.r r ON l.id = r.id"
MINE = [f"id{i:03d}" for i in range(60)]
THEIRS = [f"id{i:03d}" for i in range(10, 80)]  # 50 in common


def _peer(label: bytes, seen: list[f.Frame], ending: str) -> po.Exchange:
    """The other owner, played by the test: an honest exchange up to the matcher's
    tally, then ``ending``: ``refuse`` (a Release with an error) or ``hang up``."""

    def exchange(node: str, requests: Iterator[f.Frame], deadline: float) -> Iterator[f.Frame]:
        assert isinstance(next(requests), f.Hello)
        beta = group.new_scalar()
        yield f.Hello(len(THEIRS), 1, 4096)
        back = b""
        for frame in requests:
            if isinstance(frame, f.Done):
                break
            back += bytes(group.blind(frame.points, beta))
        yield f.Points(f.REBLINDED, 0, back)
        yield f.Done(f.REBLINDED)
        own = [s.encode() for s in THEIRS]
        yield f.Points(f.OWN, 0, bytes(group.blind(group.hash_to_points(label, own), beta)))
        yield f.Done(f.OWN)
        tally = next(requests)
        seen.append(tally)
        if ending == "refuse":
            refusal = Error(Code.PERMISSION_DENIED, "not today")
            yield f.Release(OwnerReport("jiangsu", error=refusal))

    return exchange


def _matcher(parts: OwnerParts, exchange: po.Exchange) -> po.PsiOwner:
    path = parts.data / "l.parquet"
    pq.write_table(pa.table({"id": MINE}), path)
    desc = DatasetDescriptor(
        "l", "L", "identifiers", "test", "L2", "static", str(path), "parquet",
        (ColumnSpec("id", "string"),),
    )  # fmt: skip
    parts.catalog.register(desc, by=OPERATOR, when="2026-01-01T00:00:00Z")
    o = parts.owner
    vouching = types.SimpleNamespace()  # the matcher never checks a partner
    return po.PsiOwner(
        "anhui", parts.catalog, parts.grants, parts.engine, o.pipeline, vouching,  # type: ignore[arg-type]
        PsiSessions(parts.state), exchange,
    )  # fmt: skip


@pytest.mark.parametrize("ending", ["refuse", "hang up"])
def test_a_session_that_ends_after_the_matchers_noisy_tally_spends_its_epsilon(
    tmp_path: Path, ending: str
) -> None:
    with owner_parts(tmp_path) as parts:
        grant = parts.grants.add(
            org_grant(
                "l", ORG, {"id": ("join_key",)}, operations=("psi",), dp_epsilon=1.0,
                dp_budget=3.0, min_group_size=5,
            )
        )  # fmt: skip
        plan = join_or_refuse(SQL)
        seen: list[f.Frame] = []
        label_of: dict[str, bytes] = {}

        def exchange(node: str, requests: Iterator[f.Frame], deadline: float) -> Iterator[f.Frame]:
            return _peer(label_of["label"], seen, ending)(node, requests, deadline)

        owner = _matcher(parts, exchange)
        codes = []
        for _ in range(2):
            env = Envelope(
                f"r-{uuid.uuid4().hex[:12]}", ANALYST, "shanghai", "psi", plan.sql,
                deadline=time.monotonic() + 20,
            )  # fmt: skip
            label_of["label"] = po.session_label(env.request_id, plan)
            with pytest.raises(FedgateError) as err:
                list(owner.match(env))
            codes.append(err.value.code)
            assert "its privacy budget is spent" in err.value.message
        entries = [e.data for e in parts.audit.entries()]
        after = parts.grants.get(grant.id)
    assert len(seen) == 2 and all(isinstance(t, f.Tally) for t in seen)  # the noise left
    want = Code.PERMISSION_DENIED if ending == "refuse" else Code.UNAVAILABLE
    assert codes == [want, want]
    assert after.epsilon_spent == pytest.approx(2.0) and after.uses == 2
    released = [e for e in entries if e["kind"] == "release"]
    assert len(released) == 2
    assert all(e["withheld"] == "ended once its noise was sent" for e in released)
    assert all(e["epsilon"] == pytest.approx(1.0) for e in released)
    assert not [e for e in entries if e["kind"] == "psi.refused"]  # its one entry
