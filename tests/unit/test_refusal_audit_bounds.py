"""A refusal's audit entry grows with the number of refusals, never with the size of a
request: the reason and each subject value are cut as the edge cuts its own entries."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from federation.envelope import Envelope, Requester
from gateway import identity
from gateway.audit import AuditLog
from gateway.errors import InvalidArgument
from gateway.limits import AUDIT_TEXT_CHARS
from gateway.policy.store import GrantStore
from gateway.receipts import Signer
from gateway.release.pipeline import ReleasePipeline
from gateway.state import State

HUGE = "d" * 1_000_000  # a name the caller chose, as a 1 MB training dataset name was


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[tuple[ReleasePipeline, State]]:
    state = State(tmp_path / "state.sqlite3")
    key = identity.new_key()
    audit = AuditLog(state, "anhui", key, b"")
    try:
        yield ReleasePipeline("anhui", GrantStore(state), audit, Signer(key, b""), 4 << 20), state
    finally:
        state.close()


def _refusals(state: State) -> list[str]:
    with state.transaction() as db:
        rows = db.execute("SELECT body FROM audit WHERE kind = 'train.refused'").fetchall()
    return [r[0] for r in rows]


def test_reason_and_subject_values_are_cut(parts: tuple[ReleasePipeline, State]) -> None:
    pipeline, state = parts
    env = Envelope(
        request_id="run-1",
        requester=Requester("analyst", "li.wei@shanghai", "Shanghai"),
        home_node="shanghai",
        operation="train",
        body="{}",
        deadline=time.monotonic() + 30,
    )
    subject = {"dataset": HUGE, "task": "logreg", "round": "1"}
    for _ in range(10):
        pipeline.refused("train", env, subject, InvalidArgument(f"no dataset {HUGE!r}"))
    bodies = _refusals(state)
    assert len(bodies) == 10
    assert max(len(b) for b in bodies) < 4 * AUDIT_TEXT_CHARS  # was 1.9 MiB each
    entry = json.loads(bodies[0])
    assert entry["dataset"].startswith("d" * AUDIT_TEXT_CHARS)
    assert entry["dataset"].endswith(f"...[cut, {len(HUGE)} chars]")
    assert entry["reason"].endswith(f"...[cut, {len(HUGE) + 13} chars]")
    assert (entry["task"], entry["round"], entry["code"]) == ("logreg", "1", "INVALID_ARGUMENT")
