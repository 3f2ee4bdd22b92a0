"""The other owner's side of a session when its own sending thread fails (review,
2026-12-04: the failure was swallowed and the session audited as "the other owner stopped
the session", the peer blamed for this owner's bug, and no traceback logged)."""

from __future__ import annotations

import logging
import threading
import time
import types
from pathlib import Path

import pyarrow as pa
import pytest

from federation.envelope import Envelope, Requester
from federation.outcome import Code
from federation.psi import frames as f
from federation.psi import group
from federation.psi.stream import Limits
from gateway.errors import FedgateError
from gateway.planning import join_or_refuse
from gateway.psi_sessions import PsiSessions
from gateway.roles import psi_owner as po
from gateway.roles.psi_rows import canonical
from gateway.state import State


def test_a_failure_of_the_sending_thread_is_this_owners_internal_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    plan = join_or_refuse("SELECT COUNT(*) AS n FROM a.l m JOIN b.r r ON m.id = r.id")
    rows = canonical(
        pa.table({"id": [str(i) for i in range(100)]}), "id", unique=False, dataset="r"
    )
    owner = types.SimpleNamespace(
        settings=po.Settings(Limits()),
        pipeline=types.SimpleNamespace(max_payload_bytes=1 << 22),
        sessions=PsiSessions(State(tmp_path / "state.sqlite3")),
        _rows=lambda *_: rows,
    )
    env = Envelope(
        "req1", Requester("analyst", "x", "org"), "a", "psi", plan.sql,
        deadline=time.monotonic() + 10,
    )  # fmt: skip
    label = po.session_label("req1", plan)
    theirs = [str(i).encode() for i in range(50, 150)]
    pts = bytes(group.blind(group.hash_to_points(label, theirs), group.new_scalar()))
    hello = f.Hello(len(theirs), 5, 4096, envelope=env)
    frames = iter([f.Points(f.OWN, 0, pts), f.Done(f.OWN)])
    outbox = po._Outbox(env.deadline)
    sent: list[f.Frame] = []
    threading.Thread(target=lambda: sent.extend(outbox.frames()), daemon=True).start()
    session = po._ResponderSession(owner, env, plan, 1, None, hello, frames, outbox)  # type: ignore[arg-type]
    session.entry = types.SimpleNamespace(descriptor=types.SimpleNamespace(columns=[]))  # type: ignore[assignment]

    def broken(*_: object) -> None:
        raise RuntimeError("a bug in the sender")

    monkeypatch.setattr(po, "batch", broken)  # only the sending thread reads its own batches
    grant = types.SimpleNamespace(id="g", exact=False)
    decision = types.SimpleNamespace(epsilon=0.0, min_group_size=5, level="L2", grant=grant)
    with caplog.at_level(logging.ERROR, logger="fedgate.psi"), pytest.raises(FedgateError) as err:
        session.run(decision, env.deadline)  # type: ignore[arg-type]
    assert err.value.code is Code.INTERNAL, err.value
    assert "internal error in the PSI session" in err.value.message
    assert "a bug in the sender" in caplog.text  # the traceback, in the node's log only
    assert "a bug in the sender" not in err.value.message
