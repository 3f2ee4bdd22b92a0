"""The training owner's rows and runs, with real parts: the catalog and grants of
``test_owner``'s fixture, DuckDB, and a custom app's real process. Review findings of
2026-12-04: rows a DP release would not cover, and an app process left running."""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict

from federation.envelope import Envelope, Requester
from federation.training.client_app import ARRAYS, CONFIG, METRICS, NUM_EXAMPLES, STATS_MESSAGE
from federation.training.config import SERVER_ROUND
from gateway import clock, identity
from gateway.descriptor import ColumnSpec, DatasetDescriptor
from gateway.errors import Aborted, PermissionDenied
from gateway.housekeeping import housekeeping
from gateway.policy.model import Decision, Grant
from gateway.roles.train_owner import (
    IDLE_SECONDS,
    RUNS_KEPT,
    TrainOwner,
    _dp_bounds,
    _Run,
    check_app_reply,
    run_key,
)
from gateway.training.app_host import AppHost
from gateway.training.apps import AppStore
from gateway.training.grid import from_bytes, to_bytes
from gateway.training.settings import train_config
from gateway.training.spec import TrainSpec
from gateway.training.transfers import Piece
from tests.integration.test_training_apps import APP
from tests.unit.owner_parts import org_grant
from tests.unit.test_owner import Parts
from tests.unit.training_grid import server_identity

K = 10
CATEGORIES = ("A", "B", "C", "D")
ANALYST = Requester("analyst", "li.wei@shanghai", "Shanghai Big Data Center")


def _owner(parts: Parts, apps: Path) -> TrainOwner:
    o = parts.owner
    return TrainOwner(
        "anhui",
        o.catalog,
        o.grants,
        o.engine,
        o.pipeline,
        AppStore(apps),
        vouching=None,  # type: ignore[arg-type]
    )


def _kept(owner: TrainOwner, env: Envelope, msg: Message) -> _Run:
    """The run of ``env`` kept at ``owner``, as once its first message was answered."""
    run = owner._open(env, msg)
    owner._keep(run_key(env), run)
    return run


def _register(parts: Parts, name: str, table: pa.Table, columns: tuple[ColumnSpec, ...]) -> Any:
    path = parts.data / f"{name}.parquet"
    pq.write_table(table, path)
    desc = DatasetDescriptor(
        name, name, "test", "test", "L3", "static", str(path), "parquet", columns
    )
    operator = identity.Identity("operator", "op@anhui", "Anhui bureau", "1", clock.now())
    parts.catalog.register(desc, by=operator, when="2026-01-01T00:00:00Z")
    entry = parts.catalog.get(name)
    assert entry is not None
    return entry


def _decision(dataset: str, epsilon: float) -> Decision:
    grant = Grant(
        "g",
        dataset,
        "org",
        ANALYST.org,
        ("train",),
        {"sector": ("group_by",), "x": ("aggregate",), "y": ("aggregate",)},
        K,
        dp_epsilon=epsilon,
        dp_budget=10 * epsilon,
    )
    return Decision(grant, K, epsilon, {"x": (0.0, 10.0)}, "L3")


def _spec(dataset: str, features: tuple[str, ...], task: str = "logreg", **kw: Any) -> TrainSpec:
    return TrainSpec(
        task=task,
        dataset=dataset,
        features=features,
        label="y",
        n_classes=2,
        nodes=("anhui",),
        **{"rounds": 1, **kw},
    )


def _sectors(parts: Parts, owner: TrainOwner, sectors: list[str], epsilon: float) -> Any:
    name = f"s{uuid.uuid4().hex[:8]}"
    table = pa.table({"sector": sectors, "y": [i % 2 == 0 for i in range(len(sectors))]})
    cols = (ColumnSpec("sector", "string", categories=CATEGORIES), ColumnSpec("y", "bool"))
    entry = _register(parts, name, table, cols)
    spec = _spec(name, ("sector",), dp_clip=1.0 if epsilon else 0.0)
    decision = _decision(name, epsilon)
    X, _, _ = owner._rows(spec, entry, decision, time.monotonic() + 30, "r")
    return X, spec, entry, decision


def test_under_dp_one_more_row_moves_the_moments_by_at_most_the_noised_bound(
    parts: Parts, tmp_path: Path
) -> None:
    """A category one row short of k: one more row must move the released sums by no more
    than the bound the noise is scaled to (it moved them by k + 1 when rare categories
    were blanked under DP too). Without DP the rare category is still blanked."""
    owner = _owner(parts, tmp_path / "apps")
    base = ["A"] * 50 + ["B"] * 50 + ["C"] * 50 + ["D"] * (K - 1)
    X0, spec, entry, decision = _sectors(parts, owner, base, 1.0)
    X1, _, _, _ = _sectors(parts, owner, [*base, "D"], 1.0)
    bounds = np.array(_dp_bounds(spec, entry, decision))
    mid, half = bounds.mean(axis=1), (bounds[:, 1] - bounds[:, 0]) / 2
    moved = np.abs((X1 - mid).sum(axis=0) - (X0 - mid).sum(axis=0)).sum()
    assert moved <= half.sum() + 1e-12
    assert X0[:, 3].sum() == K - 1  # the rare category kept: the noise covers its count
    plain, _, _, _ = _sectors(parts, owner, base, 0.0)
    assert plain[:, 3].sum() == 0  # without DP its exact count would show: blanked


def test_under_max_examples_one_more_row_swaps_at_most_one_row_of_the_sample(
    parts: Parts, tmp_path: Path
) -> None:
    """Review (DP): the ``max_examples`` sample was a permutation of the row count kept in
    row-id order, so one row more redrew the whole sample and moved the clamped sums by
    many rows' bound, where ``noisy_stats`` scaled to one. Picked by the rows' own values,
    one row more swaps at most one row: the sums move by at most twice one row's bound
    (what the statistics' noise is scaled to under ``max_examples``)."""
    owner = _owner(parts, tmp_path / "apps")
    rng = np.random.default_rng(7)
    xs = [float(v) for v in rng.uniform(0.0, 10.0, 200)]
    ys = [bool(v) for v in rng.integers(0, 2, 200)]
    cols = (ColumnSpec("x", "float64", lower=0.0, upper=10.0), ColumnSpec("y", "bool"))
    limit = 3 * K
    decision = dataclasses.replace(
        _decision("x", 1.0),
        grant=dataclasses.replace(_decision("x", 1.0).grant, max_examples=limit),
    )
    samples = []
    for i, (x, y) in enumerate([([], []), ([9.9], [True]), ([0.1], [False])]):
        name = f"sample{i}"
        table = pa.table({"x": pa.array([*x, *xs], pa.float64()), "y": [*y, *ys]})
        entry = _register(parts, name, table, cols)
        spec = _spec(name, ("x",), dp_clip=1.0, seed=3)
        X, y_, _ = owner._rows(spec, entry, decision, time.monotonic() + 30, "r")
        assert X.shape == (limit, 1)
        samples.append(np.column_stack([X, y_]))
        again, _, _ = owner._rows(spec, entry, decision, time.monotonic() + 30, "r")
        np.testing.assert_array_equal(again, X)  # the same rows every round
    base = {tuple(r) for r in samples[0]}
    half = 5.0
    for other in samples[1:]:
        assert len({tuple(r) for r in other} - base) <= 1  # at most one row in ...
        assert len(base - {tuple(r) for r in other}) <= 1  # ... and one out
        moved = abs((other[:, 0] - half).sum() - (samples[0][:, 0] - half).sum())
        assert moved <= 2 * half + 1e-9


def test_a_row_with_nan_or_infinity_is_missing_like_a_null(parts: Parts, tmp_path: Path) -> None:
    """A non-finite feature or label would refuse the run (telling that such a row is
    there) or pass into DP moments as NaN: the owner leaves the row out, as a NULL."""
    owner = _owner(parts, tmp_path / "apps")
    xs = [1.0, float("nan"), 2.0, float("inf"), None, *([3.0] * 20)]
    table = pa.table({"x": pa.array(xs, pa.float64()), "y": [True, False] * 12 + [True]})
    cols = (ColumnSpec("x", "float64", lower=0.0, upper=10.0), ColumnSpec("y", "bool"))
    entry = _register(parts, "withnan", table, cols)
    for epsilon in (0.0, 1.0):
        spec = _spec("withnan", ("x",), dp_clip=1.0 if epsilon else 0.0)
        X, y, _ = owner._rows(
            spec, entry, _decision("withnan", epsilon), time.monotonic() + 30, "r"
        )
        assert X.shape == (len(xs) - 3, 1) and np.isfinite(X).all() and len(y) == len(X)


def test_a_huge_integer_in_a_row_does_not_make_the_owner_refuse(
    parts: Parts, tmp_path: Path
) -> None:
    """Review (2026-12-04): an int64 above 2**53 failed Arrow's safe cast before the DP
    clamp ('not numeric'), so whether the owner answered told of that row."""
    owner = _owner(parts, tmp_path / "apps")
    xs = [1, 2, 3] * 8 + [2**53 + 1]
    table = pa.table({"x": pa.array(xs, pa.int64()), "y": [True, False] * 12 + [True]})
    cols = (ColumnSpec("x", "int64", lower=0.0, upper=10.0), ColumnSpec("y", "bool"))
    entry = _register(parts, "bigint", table, cols)
    for epsilon in (0.0, 1.0):
        spec = _spec("bigint", ("x",), dp_clip=1.0 if epsilon else 0.0)
        X, _, _ = owner._rows(spec, entry, _decision("bigint", epsilon), time.monotonic() + 30, "r")
        assert X.shape == (len(xs), 1) and X[-1, 0] == float(2**53)


def _children() -> set[int]:
    """This process's live children (by /proc: no psutil here)."""
    import os

    mine = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == os.getpid() and fields[0] != "Z":
            mine.add(int(stat.parent.name))
    return mine


@pytest.fixture()
def approved_app(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    digest = "ab" * 32
    files = tmp_path / "apps" / digest / "files"
    files.mkdir(parents=True)
    (files / "client_app.py").write_text(APP)
    approval = {"digest": digest, "name": "x", "approved_by": "ops", "approved_at": "now"}
    approval |= {"files": 1, "size": len(APP)}
    (tmp_path / "apps" / digest / "approval.json").write_text(json.dumps(approval))
    yield tmp_path / "apps", digest


def test_a_run_dropped_while_its_app_starts_leaves_no_process(
    parts: Parts, approved_app: tuple[Path, str]
) -> None:
    """A run evicted by newer runs while its first app message is answered: the answer
    is refused and the app process it started is stopped, not left holding the rows."""
    apps, digest = approved_app
    owner = _owner(parts, apps)
    spec = _spec("d", ("a", "b"), task=f"app:{digest}", rounds=3)

    def env() -> Envelope:
        return Envelope(uuid.uuid4().hex, ANALYST, "home", "train", body=spec.body())

    with server_identity():
        content = RecordDict(
            {
                "arrays": ArrayRecord([np.zeros(2), np.zeros(1)]),
                "config": ConfigRecord({"epochs": 1, "lr": 0.1, "server-round": 1}),
            }
        )
        msg = from_bytes(to_bytes(Message(content, 1001, "train")))
    before = _children()
    run = _kept(owner, env(), msg)
    rng = np.random.default_rng(0)
    run.rows = (rng.normal(size=(50, 2)), (rng.random(50) > 0.5).astype(float))
    for _ in range(RUNS_KEPT):  # newer runs' first messages drop it
        _kept(owner, env(), msg)
    assert run.closed and run not in owner._runs.values()
    with pytest.raises(Aborted, match="dropped"):
        owner._app_answer(spec, run, msg, time.monotonic() + 60, lambda a, b: b)
    assert run.host is None
    deadline = time.monotonic() + 10
    while _children() - before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _children() - before
    owner.close()


def test_a_first_piece_refused_is_audited_and_stops_the_runs_app(
    parts: Parts, approved_app: tuple[Path, str]
) -> None:
    """Review (2026-12-04): the refusal of a message's first piece (the grant revoked,
    expired or used up since the last round) was neither audited as ``train.refused`` nor
    let the app process go, which kept the run's rows up to its 900 s."""
    apps, digest = approved_app
    owner = _owner(parts, apps)
    table = pa.table({"x": [float(i) for i in range(20)], "y": [i % 2 == 0 for i in range(20)]})
    _register(parts, "nogrant", table, (ColumnSpec("x", "float64"), ColumnSpec("y", "bool")))
    spec = _spec("nogrant", ("x",), task=f"app:{digest}", rounds=3)
    env = Envelope(uuid.uuid4().hex, ANALYST, "home", "train", body=spec.body())
    with server_identity():
        msg = from_bytes(to_bytes(Message(RecordDict(), 1001, "train")))
    before = _children()
    run = _kept(owner, env, msg)  # a run under way: its rows in its app's process
    rng = np.random.default_rng(0)
    run.rows = (rng.normal(size=(20, 1)), (rng.random(20) > 0.5).astype(float))
    run.host = AppHost(apps / digest / "files", *run.rows, owner.app_limits)
    assert _children() - before
    with pytest.raises(PermissionDenied):  # no grant (as one revoked since) allows it
        owner.receive("home", env, Piece(b"x" * 1024, "t1", total=1 << 20, offset=0))
    assert run.host is None and run.rows is None
    deadline = time.monotonic() + 10
    while _children() - before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _children() - before
    refused = [e.data for e in parts.audit.entries() if e.data["kind"] == "train.refused"]
    assert [(e["request_id"], e["code"], e["task"]) for e in refused] == [
        (env.request_id, "PERMISSION_DENIED", spec.task)
    ]
    owner.close()


def test_a_homes_new_runs_push_out_its_own_before_anothers(parts: Parts, tmp_path: Path) -> None:
    """Review (2026-12-05): runs from every home shared ``RUNS_KEPT`` places, least
    recently active out first, so a home starting runs in a loop pushed out the runs of
    the others. Now the home holding the most runs loses its own least recently active."""
    owner = _owner(parts, tmp_path / "apps")
    spec = _spec("d", ("a", "b"), rounds=3)

    def env(home: str) -> Envelope:
        return Envelope(uuid.uuid4().hex, ANALYST, home, "train", body=spec.body())

    with server_identity():
        msg = from_bytes(to_bytes(Message(RecordDict(), 1001, "train")))
    theirs = _kept(owner, env("jiangsu"), msg)
    mine = [_kept(owner, env("zhejiang"), msg) for _ in range(3 * RUNS_KEPT)]
    assert theirs in owner._runs.values() and not theirs.closed
    assert list(owner._runs.values())[1:] == mine[-(RUNS_KEPT - 1) :]
    assert all(run.closed for run in mine[: -(RUNS_KEPT - 1)])
    owner.close()


def _stats(spec: TrainSpec) -> bytes:
    record = train_config(spec).to_record()
    record[SERVER_ROUND] = 0
    with server_identity():
        return to_bytes(Message(RecordDict({CONFIG: record}), 1001, STATS_MESSAGE))


def _granted_run(parts: Parts, owner: TrainOwner) -> tuple[TrainSpec, Envelope, Grant]:
    """A built-in run whose statistics this owner answered: its rows are kept."""
    table = pa.table({"x": [float(i) for i in range(40)], "y": [i % 3 == 0 for i in range(40)]})
    path = parts.data / "kept.parquet"
    pq.write_table(table, path)
    cols = (ColumnSpec("x", "float64", lower=0.0, upper=100.0), ColumnSpec("y", "bool"))
    desc = DatasetDescriptor(
        "kept", "kept", "test", "test", "L2", "static", str(path), "parquet", cols
    )
    operator = identity.Identity("operator", "op@anhui", "Anhui bureau", "1", clock.now())
    parts.catalog.register(desc, by=operator, when="2026-01-01T00:00:00Z")
    grant = parts.grants.add(
        org_grant(
            "kept", ANALYST.org, {"x": ("aggregate",), "y": ("aggregate",)},
            operations=("train",), exact=True, train_tasks=("logreg",), max_rounds=5,
        )
    )  # fmt: skip
    spec = _spec("kept", ("x",), rounds=3)
    env = Envelope(uuid.uuid4().hex, ANALYST, "home", "train", body=spec.body())
    owner.step(dataclasses.replace(env, deadline=time.monotonic() + 30), _stats(spec))
    assert owner._runs[run_key(env)].rows is not None
    return spec, env, grant


def test_a_refused_step_lets_a_built_in_runs_rows_go(parts: Parts, tmp_path: Path) -> None:
    """Review (2026-12-05): only a custom app's run let its rows go with a refusal; a
    built-in run revoked mid-run kept its rows until newer runs pushed it out. The order
    of the run is kept: its statistics stay answered."""
    owner = _owner(parts, tmp_path / "apps")
    spec, env, grant = _granted_run(parts, owner)
    parts.grants.revoke(grant.id, "2026-01-02T00:00:00Z")
    with pytest.raises(PermissionDenied):
        owner.step(dataclasses.replace(env, deadline=time.monotonic() + 30), _stats(spec))
    run = owner._runs[run_key(env)]
    assert run.rows is None and (STATS_MESSAGE, 0) in run.asked
    owner.close()


def test_the_sweep_drops_idle_runs_and_their_app_processes(
    parts: Parts, approved_app: tuple[Path, str]
) -> None:
    """Review (2026-12-05): a run cancelled at its home, failed at another owner or
    refused sends no last message, and its rows and app process stayed with no time
    limit; an unfinished upload stayed until the next training call. The node's
    housekeeping sweeps: a run idle past ``IDLE_SECONDS`` goes, and its process with it,
    and so do pieces held past their time; what is less idle stays."""
    apps, digest = approved_app
    owner = _owner(parts, apps)
    _, env, _ = _granted_run(parts, owner)
    spec = _spec("d", ("a", "b"), task=f"app:{digest}", rounds=3)
    app_env = Envelope(uuid.uuid4().hex, ANALYST, "home", "train", body=spec.body())
    with server_identity():
        msg = from_bytes(to_bytes(Message(RecordDict(), 1001, "train")))
    before = _children()
    run = _kept(owner, app_env, msg)
    rng = np.random.default_rng(0)
    run.rows = (rng.normal(size=(20, 2)), (rng.random(20) > 0.5).astype(float))
    run.host = AppHost(apps / digest / "files", *run.rows, owner.app_limits)
    assert _children() - before
    now = [time.monotonic()]

    def sweep() -> None:  # the owner's sweep, on the test's clock
        owner.sweep(now[0])

    job = housekeeping(lambda: None, parts.grants, parts.audit, 0, sweep)  # type: ignore[arg-type]
    owner.transfers.put(("home", app_env.request_id, "t"), 1 << 20, 0, b"u" * 1024)
    job()  # neither run is idle yet, nor the upload
    assert len(owner._runs) == 2 and owner.transfers._bytes() == 1024
    now[0] += IDLE_SECONDS + 1
    job()
    assert not owner._runs and run.closed and run.host is None
    assert owner.transfers._bytes() == 0  # an upload left unfinished goes with the sweep too
    deadline = time.monotonic() + 10
    while _children() - before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _children() - before
    owner.close()


def test_an_apps_model_in_a_float_wider_than_float64_is_refused() -> None:
    """Review (2026-12-05): ``dtype.kind == "f"`` let float128 through; its 1e400 is finite
    there and inf once taken to float64, where DP's clip made it NaN at the positions the
    app chose, past the noise. Only float16/32/64 of finite values may leave."""
    sent = RecordDict({ARRAYS: ArrayRecord({"w": Array(np.zeros(8))})})
    with server_identity():
        msg = Message(sent, dst_node_id=1, message_type="train")
    wide = np.zeros(8, dtype=np.longdouble)
    wide[[1, 5]] = np.longdouble("1e400")
    for values, allowed in (
        (np.ones(8), True),
        (np.ones(8, dtype=np.float32), True),
        (wide, False),
    ):
        reply = RecordDict(
            {ARRAYS: ArrayRecord({"w": Array(values)}), METRICS: MetricRecord({NUM_EXAMPLES: 4})}
        )
        if allowed:
            check_app_reply(msg, reply, 10)
        else:
            with pytest.raises(Aborted, match="shape"):
                check_app_reply(msg, reply, 10)
