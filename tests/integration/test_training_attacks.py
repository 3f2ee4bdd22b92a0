"""A misbehaving home, played by the test with a node's own certificate and key.

It signs a run's spec as a home does, then sends ``Peer/TrainStep`` messages an honest
home would not: settings that differ from the signed spec, the same round twice, rounds
out of order, classes the label does not declare, bytes that are no Flower message, or a
step sent by a node that is not the run's home. Each is refused by the owner with a clear
status and an audit entry, and nothing is released.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from typing import Any

import grpc
import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, RecordDict
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key

from federation.envelope import Envelope, Requester
from federation.training.client_app import (
    ARRAYS,
    CONFIG,
    KEY_STATEMENT,
    KEY_STATEMENTS,
    LEGACY_ARRAYS,
    LEGACY_CONFIG,
    STATS_MESSAGE,
)
from federation.training.config import SERVER_ROUND
from federation.training.errors import TooFewNodes
from gateway import serde
from gateway.roles.train_home import FIRST_NODE_ID
from gateway.rpc.v1 import peer_pb2_grpc
from gateway.training.grid import from_bytes, to_bytes
from gateway.training.settings import train_config
from gateway.training.spec import TrainSpec
from gateway.training.transfers import Piece
from tests.conftest import RunningFederation
from tests.integration.test_psi import register
from tests.integration.test_psi_attacks import sign_as
from tests.integration.test_training import (  # noqa: F401
    ANALYST,
    COLUMNS,
    CONTROLS,
    FEATURES,
    OWNERS,
    parts,
    rows,
)
from tests.unit.training_grid import server_identity

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("parts")]

HOME, OWNER = "shanghai", "jiangsu"
SPEC = TrainSpec(
    task="logreg", dataset="train_rows", features=FEATURES, label="y", rounds=3, seed=7,
    n_classes=2, nodes=OWNERS,
)  # fmt: skip


def envelope(fed: RunningFederation, spec: TrainSpec = SPEC) -> Envelope:
    env = Envelope(
        request_id=uuid.uuid4().hex,
        requester=Requester("analyst", ANALYST, fed.fed.node(HOME).org),
        home_node=HOME,
        operation="train",
        body=spec.body(),
    )
    return sign_as(fed, HOME, env)


def message(kind: str, round_: int = 0, spec: TrainSpec = SPEC, **changes: object) -> bytes:
    """A message as the run's server side builds it, with ``changes`` to its settings."""
    record = replace(train_config(spec), **changes).to_record()  # type: ignore[arg-type]
    record[SERVER_ROUND] = round_
    with server_identity():
        return to_bytes(Message(RecordDict({CONFIG: record}), FIRST_NODE_ID, kind))


def step(fed: RunningFederation, env: Envelope, data: bytes, caller: str = HOME) -> object:
    with fed.peer_channel(caller, OWNER) as ch:
        stub = peer_pb2_grpc.PeerStub(ch)
        req = serde.train_step_request(env, Piece(data, uuid.uuid4().hex))
        return stub.TrainStep(req, timeout=30)


def refused(
    fed: RunningFederation, env: Envelope, data: bytes, caller: str = HOME
) -> grpc.RpcError:
    before = len(fed.audit(OWNER, "release"))
    with pytest.raises(grpc.RpcError) as err:
        step(fed, env, data, caller)
    assert len(fed.audit(OWNER, "release")) == before, "something was released"
    return err.value


@pytest.mark.parametrize(
    "changes",
    [
        {"task": "linreg", "n_classes": 0},
        {"holdout": 0.9},
        {"epochs": 99},
        {"batch_size": 1},
        {"proximal_mu": 5.0},  # FedProx's term in a FedAvg run (review, 2026-12-04)
    ],
    ids=["task", "holdout", "epochs", "batch", "proximal"],
)
def test_settings_that_differ_from_the_signed_spec_are_refused(
    federation: RunningFederation,
    changes: dict,
) -> None:
    env = envelope(federation)
    err = refused(federation, env, message(STATS_MESSAGE, **changes))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "differ from the run's signed spec" in (err.details() or "")
    entries = [
        e for e in federation.audit(OWNER, "train.refused") if e["request_id"] == env.request_id
    ]
    assert len(entries) == 1 and entries[0]["code"] == "INVALID_ARGUMENT"


def test_a_message_is_answered_once_and_rounds_in_order(
    federation: RunningFederation,
) -> None:
    env = envelope(federation)
    step(federation, env, message(STATS_MESSAGE))  # the statistics, once
    again = refused(federation, env, message(STATS_MESSAGE))
    assert again.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "already answered" in (again.details() or "")
    skipped = refused(federation, env, message("evaluate", 1))
    assert skipped.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "before its training" in (skipped.details() or "")
    # nor a "round 0" evaluation of a model the home chose before any training
    early = refused(federation, env, message("evaluate", 0))
    assert early.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "before its training" in (early.details() or "")


def test_classes_the_label_does_not_declare_are_refused(
    federation: RunningFederation,
) -> None:
    spec = replace(SPEC, n_classes=5)
    env = envelope(federation, spec)
    record = train_config(spec).to_record()
    with server_identity():
        data = to_bytes(Message(RecordDict({CONFIG: record}), FIRST_NODE_ID, STATS_MESSAGE))
    err = refused(federation, env, data)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "declares 2 classes, not 5" in (err.details() or "")


def test_bytes_that_are_no_flower_message_are_refused(
    federation: RunningFederation,
) -> None:
    err = refused(federation, envelope(federation), b"\x0a\xff\xff\xff\xff\x0f garbage")
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a Flower message" in (err.details() or "")


def test_a_step_from_a_node_that_is_not_the_home_is_refused(
    federation: RunningFederation,
) -> None:
    err = refused(federation, envelope(federation), message(STATS_MESSAGE), caller="zhejiang")
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "the run's home node itself" in (err.details() or "")


SECAGG = replace(SPEC, secagg=True)


def stage(
    stage_name: str, round_: int, kind: str = "train", dst: int = FIRST_NODE_ID, **configs: object
) -> bytes:
    """A SecAgg+ stage message as Flower's workflow builds it, with these settings."""
    record = ConfigRecord({Key.STAGE: stage_name, **configs})  # type: ignore[arg-type]
    content = RecordDict({RECORD_KEY_CONFIGS: record})
    if kind != "train":  # what a stats or evaluate message carries besides
        content[CONFIG] = train_config(SECAGG).to_record()
    with server_identity():
        return to_bytes(Message(content, dst, kind, group_id=str(round_)))


SETUP = {
    Key.SAMPLE_NUMBER: 3, Key.SHARE_NUMBER: 3, Key.THRESHOLD: 2, Key.CLIPPING_RANGE: 8.0,
    Key.TARGET_RANGE: 2**22, Key.MOD_RANGE: 2**32, Key.MAX_WEIGHT: 1000.0,
}  # fmt: skip


def test_a_secagg_run_releases_no_unmasked_update(federation: RunningFederation) -> None:
    """A home that signed --secagg and then asks a plain train (or a plain run that
    speaks SecAgg+) is refused: the unmasked update never leaves."""
    env = envelope(federation, SECAGG)
    step(federation, env, message(STATS_MESSAGE))
    err = refused(federation, env, message("train", 1))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "no unmasked update" in (err.details() or "")
    err = refused(federation, envelope(federation), stage("setup", 1, **SETUP))
    assert "not signed for --secagg" in (err.details() or "")


@pytest.mark.parametrize(
    "weak",
    [{Key.THRESHOLD: 1}, {Key.SHARE_NUMBER: 4, Key.THRESHOLD: 2}, {Key.SAMPLE_NUMBER: 2}],
    ids=["threshold-1", "minority", "two-owners"],
)
def test_a_setup_that_lets_the_home_rebuild_a_secret_is_refused(
    federation: RunningFederation, weak: dict
) -> None:
    env = envelope(federation, SECAGG)
    step(federation, env, message(STATS_MESSAGE))
    err = refused(federation, env, stage("setup", 1, **{**SETUP, **weak}))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    entries = [
        e for e in federation.audit(OWNER, "train.refused") if e["request_id"] == env.request_id
    ]
    assert len(entries) == 1


def test_secagg_stages_in_order_and_once(federation: RunningFederation) -> None:
    env = envelope(federation, SECAGG)
    step(federation, env, message(STATS_MESSAGE))
    err = refused(
        federation,
        env,
        stage("unmask", 1, **{Key.ACTIVE_NODE_ID_LIST: [FIRST_NODE_ID], Key.DEAD_NODE_ID_LIST: []}),
    )
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and "out of order" in (
        err.details() or ""
    )
    step(federation, env, stage("setup", 1, **SETUP))
    err = refused(federation, env, stage("setup", 1, **SETUP))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and "already answered" in (
        err.details() or ""
    )


@pytest.mark.parametrize("kind", [STATS_MESSAGE, "evaluate"])
def test_a_secagg_stage_outside_a_train_message_is_refused(
    federation: RunningFederation, kind: str
) -> None:
    """A stage record on a statistics or evaluate message would have the owner answer it
    as that message, skipping the spec's settings (and, under DP, the noise)."""
    env = envelope(federation, SECAGG)
    err = refused(federation, env, stage("setup", 1, kind=kind, **SETUP))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "only in a train message" in (err.details() or "")


def test_a_run_speaks_to_one_node_id_at_an_owner(federation: RunningFederation) -> None:
    """The node id is the owner's name in SecAgg+: a home may not change it mid-run."""
    env = envelope(federation, SECAGG)
    step(federation, env, message(STATS_MESSAGE))
    err = refused(federation, env, stage("setup", 1, dst=FIRST_NODE_ID + 7, **SETUP))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "one node id" in (err.details() or "")


def test_a_key_share_without_every_owner_is_refused(federation: RunningFederation) -> None:
    env = envelope(federation, SECAGG)
    step(federation, env, message(STATS_MESSAGE))
    step(federation, env, stage("setup", 1, **SETUP))
    keys = {str(FIRST_NODE_ID): [b"a" * 32, b"b" * 32], "9": [b"c" * 32, b"d" * 32]}
    err = refused(federation, env, stage("share_keys", 1, **keys))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "every owner of the round" in (err.details() or "")


def test_keys_a_home_slips_in_for_another_owner_are_refused(
    federation: RunningFederation,
) -> None:
    """A home that relays keys of its own as another owner's (to read the shares meant
    for it) is refused: every owner's keys come signed by that owner's node key, for this
    run and round, and the owner checks each signature and signer."""
    from gateway.receipts import Receipt

    env = envelope(federation, SECAGG)
    step(federation, env, message(STATS_MESSAGE))
    with server_identity():
        reply = from_bytes(bytes(step(federation, env, stage("setup", 1, **SETUP)).message))
    mine = reply.content.config_records[RECORD_KEY_CONFIGS]
    own = [mine[Key.PUBLIC_KEY_1], mine[Key.PUBLIC_KEY_2]]
    statement = reply.content.config_records[KEY_STATEMENT]["statement"]
    assert Receipt.from_json(statement).owner == OWNER  # signed by the owner's node key
    fake = {"8": [b"a" * 32, b"b" * 32], "9": [b"c" * 32, b"d" * 32]}
    keys = {str(FIRST_NODE_ID): own, **fake}
    unsigned = stage("share_keys", 1, **keys)
    err = refused(federation, env, unsigned)
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED and "unsigned" in (err.details() or "")
    # the owner's own statement passed off as the others'
    forged = stage_with_statements("share_keys", 1, keys, {k: statement for k in keys})
    err = refused(federation, env, forged)
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "not the ones it signed" in (err.details() or "")


def stage_with_statements(
    stage_name: str, round_: int, configs: dict, statements: dict[str, str]
) -> bytes:
    record = ConfigRecord({Key.STAGE: stage_name, **configs})
    content = RecordDict(
        {RECORD_KEY_CONFIGS: record, KEY_STATEMENTS: ConfigRecord(dict(statements))}
    )
    with server_identity():
        return to_bytes(Message(content, FIRST_NODE_ID, "train", group_id=str(round_)))


def test_keys_signed_by_members_that_are_no_owners_of_the_run_are_refused(
    federation: RunningFederation,
) -> None:
    """Two members the run does not name (a home's accomplices, with no data and no
    grant) sign keys as participants: each owner takes keys only from the run's owners."""
    from gateway import identity, receipts
    from gateway.roles.train_owner import run_key
    from gateway.training.secagg_guard import key_statement

    env = envelope(federation, SECAGG)
    step(federation, env, message(STATS_MESSAGE))
    with server_identity():
        reply = from_bytes(bytes(step(federation, env, stage("setup", 1, **SETUP)).message))
    mine = reply.content.config_records[RECORD_KEY_CONFIGS]
    keys = {str(FIRST_NODE_ID): [mine[Key.PUBLIC_KEY_1], mine[Key.PUBLIC_KEY_2]]}
    statements = {str(FIRST_NODE_ID): reply.content.config_records[KEY_STATEMENT]["statement"]}
    for node_id, member in ((8, "hefei"), (9, "wuhu")):
        pk1, pk2 = bytes([node_id]) * 32, bytes([node_id + 1]) * 32
        tls = federation.fed.node_dir(member) / "tls"
        body = {**key_statement(run_key(env), 1, node_id, pk1, pk2), "owner": member}
        signed = receipts.sign(
            body, identity.load_key(tls / "node.key"), (tls / "node.pem").read_bytes()
        )
        keys[str(node_id)] = [pk1, pk2]
        statements[str(node_id)] = signed.to_json()
    err = refused(federation, env, stage_with_statements("share_keys", 1, keys, statements))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "no owner of the run" in (err.details() or "")


def test_pieces_of_a_run_that_does_not_name_the_owner_are_not_held(
    federation: RunningFederation,
) -> None:
    """The first piece of a large message is decided before anything is held: a run
    that does not name this owner is refused there, and nothing is kept of it."""
    env = envelope(federation, replace(SPEC, nodes=("shanghai", "zhejiang")))
    piece = Piece(b"x" * 1024, uuid.uuid4().hex, total=10 * 1024 * 1024, offset=0)
    with federation.peer_channel(HOME, OWNER) as ch, pytest.raises(grpc.RpcError) as err:
        peer_pb2_grpc.PeerStub(ch).TrainStep(serde.train_step_request(env, piece), timeout=30)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "does not name jiangsu" in (err.value.details() or "")
    # audited as any refusal of a message (review, 2026-12-04: a first piece's was not)
    entries = [
        e for e in federation.audit(OWNER, "train.refused") if e["request_id"] == env.request_id
    ]
    assert [e["code"] for e in entries] == ["PERMISSION_DENIED"]
    assert entries[0]["dataset"] == SPEC.dataset


def train_message(spec: TrainSpec, round_: int, arrays: list, **changes: object) -> bytes:
    """A train message carrying the model ``arrays`` and the spec's settings."""
    record = replace(train_config(spec), **changes).to_record()  # type: ignore[arg-type]
    record[SERVER_ROUND] = round_
    content = RecordDict({CONFIG: record, ARRAYS: ArrayRecord([np.asarray(a) for a in arrays])})
    with server_identity():
        return to_bytes(Message(content, FIRST_NODE_ID, "train"))


def test_a_model_wider_than_the_runs_task_is_refused(federation: RunningFederation) -> None:
    """A home's logistic regression with a thousand outputs (each could fire on one row,
    making the update a copy of rows) is not the run's model: refused, nothing released."""
    env = envelope(federation)
    step(federation, env, message(STATS_MESSAGE))
    wide = [np.zeros((len(FEATURES), 1000)), np.zeros(1000)]
    err = refused(federation, env, train_message(SPEC, 1, wide))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not the run's" in (err.details() or "")


def test_under_dp_the_homes_standardisation_cannot_make_the_rows_refuse(
    federation: RunningFederation,
) -> None:
    """Under a DP grant a home that picks a std of 1e-308 (standardising overflows only
    for a row above the mean) and a learning rate that diverges gets an answer, noised
    and charged, not a refusal that would read a row's value for free: the owner holds
    the standardisation to the declared bounds and a diverging round stays put."""
    table = rows(31, 400)
    register(
        federation, OWNER, "train_dp_attack", table, COLUMNS, CONTROLS, operations=("train",),
        level="L3", min_group_size=10, dp_epsilon=0.5, dp_budget=5.0,
        train_tasks=("logreg",), max_rounds=5,
    )  # fmt: skip
    spec = replace(SPEC, dataset="train_dp_attack", dp_clip=1.0, learning_rate=10.0)
    env = envelope(federation, spec)
    step(federation, env, message(STATS_MESSAGE, spec=spec))  # a DP release of its own
    before = len(federation.audit(OWNER, "release"))
    n = len(FEATURES)
    model = [np.zeros((n, 1)), np.zeros(1)]
    for round_, mean in ((1, -100.0), (2, 99.0)):  # below every row, then above most
        data = train_message(spec, round_, model, mean=(mean,) * n, std=(1e-308,) * n)
        report = serde.train_step_answer(step(federation, env, data)).report
        assert report is not None and report.epsilon == pytest.approx(0.5)
    releases = federation.audit(OWNER, "release")[before:]
    assert [e["request_id"] for e in releases] == [env.request_id] * 2
    assert not [
        e for e in federation.audit(OWNER, "train.refused") if e["request_id"] == env.request_id
    ]


@pytest.mark.parametrize(
    ("field", "value"),
    [("rounds", "1e999"), ("seed", "-1"), ("dataset", '"' + "d" * 5000 + '"')],
    ids=["rounds-overflow", "negative-seed", "long-name"],
)
def test_a_spec_out_of_range_is_an_invalid_argument(
    federation: RunningFederation, field: str, value: str
) -> None:
    """Numbers no run can hold and names longer than an audit entry quotes: a clear
    INVALID_ARGUMENT, never an INTERNAL error."""
    was = f'"{field}":{json.dumps(getattr(SPEC, field))}'
    body = SPEC.body().replace(was, f'"{field}":{value}')
    assert body != SPEC.body()
    env = Envelope(
        request_id=uuid.uuid4().hex,
        requester=Requester("analyst", ANALYST, federation.fed.node(HOME).org),
        home_node=HOME,
        operation="train",
        body=body,
    )
    err = refused(federation, sign_as(federation, HOME, env), message(STATS_MESSAGE))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("tamper", ["model", "std", "weight"])
def test_a_secagg_home_that_tells_owners_apart_gets_nothing_unmasked(
    federation: RunningFederation, tamper: str
) -> None:
    """The home runs Flower's SecAgg+ workflow honestly but for one thing that would put
    one owner's update alone in the sum: the owner it targets gets another global model
    than the others (``model``: units answering to its rows, the others' dead), or the
    others a std that makes their updates vanish (``std``), or a maximum weight that
    rounds theirs to zero (``weight``). Every owner signs the digest of the setup, the
    model and the settings it masked its update of, and unmasks only when all signed the
    same: here none unmasks, and each audits its refusal."""
    from gateway.training import worker
    from gateway.training.job import Job
    from gateway.training.secagg_guard import stage_round

    spec = replace(SECAGG, rounds=1)
    env = envelope(federation, spec)
    owners = {FIRST_NODE_ID + i: o for i, o in enumerate(sorted(OWNERS))}
    target = FIRST_NODE_ID
    sent: list[str] = []

    def exchange(out: list[tuple[int, bytes]], timeout: float | None) -> list[tuple[int, bytes]]:
        replies = []
        for node, data in out:
            msg = from_bytes(data)
            configs = msg.content.config_records.get(RECORD_KEY_CONFIGS)
            stage = configs.get(Key.STAGE) if configs is not None else None
            if tamper == "model" and node == target and stage == "collect_masked_vectors":
                arrays = msg.content.array_records[LEGACY_ARRAYS]
                changed = [a.numpy() + 1.0 for a in arrays.values()]
                msg.content.array_records[LEGACY_ARRAYS] = ArrayRecord(
                    dict(zip(arrays.keys(), [Array(c) for c in changed], strict=True))
                )
            if tamper == "std" and node != target and stage == "collect_masked_vectors":
                settings = msg.content.config_records[LEGACY_CONFIG]
                settings["std"] = [1e300 for _ in settings["std"]]  # type: ignore[union-attr]
            if tamper == "weight" and node != target and stage == "setup":
                assert configs is not None
                configs[Key.MAX_WEIGHT] = 1e30
            data = to_bytes(msg)
            sent.append(str(msg.content.config_records.get(RECORD_KEY_CONFIGS, {}).get(Key.STAGE)))
            try:
                reply = step_at(federation, env, data, owners[node])
            except grpc.RpcError:
                continue
            replies.append((node, bytes(reply.message)))
        return replies

    job = Job(stage_round("7"), spec, tuple(owners), len(owners), 60.0)
    with server_identity(job.run_id), pytest.raises(TooFewNodes, match="secagg.unmask"):
        worker.run(job, exchange, lambda _: None)
    assert "collect_masked_vectors" in sent and "unmask" in sent
    for owner in OWNERS:
        why = [
            e["reason"]
            for e in federation.audit(owner, "train.refused")
            if e["request_id"] == env.request_id
        ]
        assert any("another model than this owner" in w for w in why), (owner, why)


def step_at(fed: RunningFederation, env: Envelope, data: bytes, owner: str) -> Any:
    with fed.peer_channel(HOME, owner) as ch:
        req = serde.train_step_request(env, Piece(data, uuid.uuid4().hex))
        return peer_pb2_grpc.PeerStub(ch).TrainStep(req, timeout=30)


def model_message(kind: str, spec: TrainSpec, round_: int) -> bytes:
    """A ``train`` or ``evaluate`` message carrying a zero model of the run's task."""
    record = train_config(spec).to_record()
    record[SERVER_ROUND] = round_
    model = ArrayRecord([np.zeros((len(FEATURES), 1)), np.zeros(1)])
    with server_identity():
        return to_bytes(Message(RecordDict({CONFIG: record, ARRAYS: model}), FIRST_NODE_ID, kind))


def test_another_homes_refused_messages_push_no_run_out(federation: RunningFederation) -> None:
    """Review (2026-12-05): an owner made a run's entry before it checked the message's
    order, and a new entry pushed the oldest run out (``RUNS_KEPT``). Another home with a
    train grant of its own here sent ``RUNS_KEPT`` evaluate messages of new runs, each
    refused for free, and pushed out a run under way: its next round was refused as out
    of order, and its round 1 could be asked again. A refused message now keeps nothing."""
    from gateway.roles.train_owner import RUNS_KEPT

    other = "zhejiang"
    register(
        federation, OWNER, "train_rows_b", rows(41, 200), COLUMNS, CONTROLS,
        operations=("train",), train_tasks=("logreg",), max_rounds=5, exact=True,
    )  # fmt: skip
    federation.grant(
        OWNER, dataset="train_rows_b", grantee_kind="org", grantee=federation.fed.node(other).org,
        operations=("train",), columns=CONTROLS, exact=True, min_group_size=10,
        train_tasks=("logreg",), max_rounds=5,
    )  # fmt: skip
    env = envelope(federation)  # the run under way, from Shanghai
    step(federation, env, message(STATS_MESSAGE))
    step(federation, env, model_message("train", SPEC, 1))
    spec_b = replace(SPEC, dataset="train_rows_b")
    for _ in range(RUNS_KEPT):
        env_b = Envelope(
            request_id=uuid.uuid4().hex,
            requester=Requester("analyst", f"mallory@{other}", federation.fed.node(other).org),
            home_node=other,
            operation="train",
            body=spec_b.body(),
        )
        err = refused(
            federation, sign_as(federation, other, env_b), model_message("evaluate", spec_b, 1),
            caller=other,
        )  # fmt: skip
        assert err.code() == grpc.StatusCode.FAILED_PRECONDITION, err.details()
        assert "before its training" in (err.details() or "")
    step(federation, env, model_message("evaluate", SPEC, 1))  # the run is still kept
    again = refused(federation, env, model_message("train", SPEC, 1))
    assert again.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "already answered" in (again.details() or "")
    step(federation, env, model_message("train", SPEC, 2))
