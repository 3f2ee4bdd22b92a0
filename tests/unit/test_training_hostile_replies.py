"""What one owner's reply may do to a run at the home (``gateway.training.worker.run``
over the gateway's Grid, the owners Flower ClientApps in process, every message carried
as Flower's bytes): a reply that is not its owner's to give counts as that owner failing
the round, named; it never decides the global model, nor ends the run for all.

Review (2026-12-05): one owner claiming ``num-examples`` 10**15 (or inf) beside weights
of 42 made the global model exactly 42s with an accuracy of ~1.0, which the home then
sent to the honest owners.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.common import bytes_to_ndarray, ndarray_to_bytes
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key

from federation.training import client_app
from federation.training.client_app import ARRAYS, METRICS, NUM_EXAMPLES
from federation.training.errors import TooFewNodes
from gateway.training import worker
from gateway.training.job import Job
from gateway.training.spec import TrainSpec
from tests.unit.training_grid import RUN_ID, LocalGrid, server_identity

NODES = (11, 12, 13)
HOSTILE = 13
SPEC = TrainSpec(
    task="logreg", dataset="d", features=("a", "b", "c"), label="y", rounds=2,
    n_classes=2, seed=1, learning_rate=0.1,
)  # fmt: skip

Rewrite = Callable[[str, RecordDict], None]  # (message type, the honest reply's content)


@pytest.fixture(autouse=True)
def _home_identity() -> Iterator[None]:
    with server_identity():
        yield


def _rows(node: int, n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(node)
    X = rng.normal(size=(n, 3)) * [1.0, 5.0, 0.5] + [0.0, 10.0, -1.0]
    y = (X @ [1.0, 0.2, -2.0] + rng.logistic(size=n) > 0).astype(np.float64)
    return X, y


def _unit_weight(received: RecordDict, reply: RecordDict) -> RecordDict:
    """What an owner's release does to an update under DP: weight one."""
    reply[METRICS] = MetricRecord({NUM_EXAMPLES: 1})
    return reply


def _owner(node: int, rewrite: Rewrite | None = None, *, dp: bool = False) -> ClientApp:
    """The built-in ClientApp on ``node``'s rows; ``rewrite`` changes what it answers."""
    X, y = _rows(node)

    def load(_: ConfigRecord) -> tuple[np.ndarray, np.ndarray]:
        return X, y

    honest = client_app.make_client_app(load, protect=_unit_weight if dp else None)
    if rewrite is None:
        return honest
    app = ClientApp()

    def answer(msg: Message, context: Context) -> Message:
        reply = honest(msg, context)
        rewrite(msg.metadata.message_type, reply.content)
        return Message(reply.content, reply_to=msg)

    app.train()(answer)
    app.evaluate()(answer)
    app.query("stats")(answer)
    return app


def _run(
    rewrite: Rewrite, *, spec: TrainSpec = SPEC, min_nodes: int = 2
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    dp = spec.dp_clip > 0
    grid = LocalGrid({n: _owner(n, rewrite if n == HOSTILE else None, dp=dp) for n in NODES})
    rounds: list[dict[str, Any]] = []
    job = Job(RUN_ID, spec, NODES, min_nodes, 60.0)
    return worker.run(job, grid._deliver_here, rounds.append), rounds


def _model(result: dict[str, Any]) -> list[np.ndarray]:
    z = np.load(io.BytesIO(result["model"]))
    return [z[f"w{i}"] for i in range(len(z.files) - 2)]


def _claims(examples: float, stage: str = "train") -> Rewrite:
    """Weights of 42 (train) or an accuracy of 1 (evaluate), claimed over ``examples``."""

    def rewrite(kind: str, content: RecordDict) -> None:
        if kind != stage:
            return
        if kind == "train":
            sent = content.array_records[ARRAYS]
            content[ARRAYS] = ArrayRecord(
                {k: Array(np.full(a.numpy().shape, 42.0)) for k, a in sent.items()}
            )
        metrics = dict(content.metric_records[METRICS])
        metrics[NUM_EXAMPLES] = examples
        if kind == "evaluate":
            metrics["eval_acc"], metrics["eval_loss"] = 1.0, 0.0
        content[METRICS] = MetricRecord(metrics)

    return rewrite


DECLARED = 200  # each owner's rows, as its statistics reply counts them


@pytest.mark.parametrize(
    "examples", [10**15, float("inf"), DECLARED + 1, 2.5, 0], ids=["1e15", "inf", "n+1", "2.5", "0"]
)
def test_a_train_weight_above_what_the_owner_declared_fails_that_owner(examples: float) -> None:
    result, rounds = _run(_claims(examples))
    assert [r["failed"] for r in rounds] == [[HOSTILE], [HOSTILE]]
    assert [r["answered"] for r in rounds] == [2, 2]
    model = _model(result)
    assert all(np.isfinite(a).all() for a in model)
    assert not any(np.allclose(a, 42.0) for a in model)
    assert rounds[-1]["eval_accuracy"] < 0.99


def test_a_weight_it_may_claim_is_used() -> None:
    """The owner's own count (what its statistics said) is a weight it may give."""
    _, rounds = _run(_claims(DECLARED))
    assert [r["failed"] for r in rounds] == [[], []]
    assert [r["answered"] for r in rounds] == [3, 3]


def test_below_the_minimum_the_run_stops_naming_the_owner() -> None:
    with pytest.raises(TooFewNodes) as info:
        _run(_claims(10**15), min_nodes=3)
    assert info.value.missing == (HOSTILE,) and info.value.stage == "train"


@pytest.mark.parametrize("examples", [10**15, float("inf")], ids=["1e15", "inf"])
def test_an_evaluation_weight_above_the_owners_rows_fails_that_owner(examples: float) -> None:
    """FedAvg weighs the evaluation metrics by num-examples too: one owner's accuracy of 1
    over 10**15 rows was the run's reported accuracy."""
    _, rounds = _run(_claims(examples, "evaluate"))
    assert [r["failed"] for r in rounds] == [[HOSTILE], [HOSTILE]]
    assert all(np.isfinite(r["eval_accuracy"]) and r["eval_accuracy"] < 0.99 for r in rounds)


def test_under_dp_every_owner_weighs_exactly_one() -> None:
    """Under DP each owner reports 1 (a row count would be one more release); one that
    claims its real count, or more, would outweigh every other owner."""
    spec = TrainSpec(**{**SPEC.__dict__, "dp_clip": 1.0})
    _, rounds = _run(_claims(2), spec=spec)
    assert [r["failed"] for r in rounds] == [[HOSTILE], [HOSTILE]]
    _, rounds = _run(_claims(1), spec=spec)
    assert [r["failed"] for r in rounds] == [[], []]


SECAGG_NODES = (11, 12, 13, 14)


def _secagg_owner(node: int, examples: int | None = None) -> ClientApp:
    """The built-in SecAgg+ ClientApp; with ``examples`` it claims that weight (beside its
    masked update, and inside it: Flower scales by it before masking)."""
    X, y = _rows(node)

    def load(_: ConfigRecord) -> tuple[np.ndarray, np.ndarray]:
        return X, y

    def claim(received: RecordDict, reply: RecordDict) -> RecordDict:
        if examples is not None:
            reply[METRICS] = MetricRecord({**dict(reply[METRICS]), NUM_EXAMPLES: examples})
        return reply

    return client_app.make_client_app(load, secagg=True, protect=claim)


@pytest.mark.parametrize("examples", [10**15, DECLARED + 1])
def test_under_secagg_a_weight_above_what_the_owner_declared_fails_that_owner(
    examples: int,
) -> None:
    """Under SecAgg+ the example count beside a masked update weighs the training loss
    (and, in Flower's legacy FedAvg, the model: inf made it NaN); the weight inside the
    masked vector is bounded by max_weight only as far as the owner quantises it."""
    spec = TrainSpec(**{**SPEC.__dict__, "secagg": True, "rounds": 1})
    apps = {n: _secagg_owner(n, examples if n == HOSTILE else None) for n in SECAGG_NODES}
    rounds: list[dict[str, Any]] = []
    job = Job(RUN_ID, spec, SECAGG_NODES, 3, 60.0)
    result = worker.run(job, LocalGrid(apps)._deliver_here, rounds.append)
    assert [r["failed"] for r in rounds] == [[HOSTILE]]
    assert all(np.isfinite(a).all() and np.abs(a).max() < 10 for a in _model(result))


# --- a reply's model must be a model of the one sent (review, 2026-12-05) ----------------
# A (5, 7) array ended the run INTERNAL ("operands could not be broadcast"), naming no
# owner; a () one was broadcast into the average unseen.


def _reshaped(how: str) -> Rewrite:
    def rewrite(kind: str, content: RecordDict) -> None:
        if kind != "train":
            return
        sent = content.array_records[ARRAYS]
        arrays = {k: a.numpy() for k, a in sent.items()}
        first = next(iter(arrays))
        if how == "(5,7)":
            arrays[first] = np.zeros((5, 7))
        elif how == "()":
            arrays[first] = np.array(3.0)
        elif how == "key":
            arrays["another"] = arrays.pop(first)
        elif how == "order":
            arrays = dict(reversed(arrays.items()))
        elif how == "int":
            arrays[first] = arrays[first].astype(np.int64)
        elif how == "nan":
            arrays[first] = np.full(arrays[first].shape, np.nan)
        elif how == "npz":  # np.load reads it as an archive, not an array
            out = io.BytesIO()
            np.savez(out, x=arrays[first])
            data = out.getvalue()
            content[ARRAYS] = ArrayRecord(
                {
                    k: Array("float64", tuple(a.shape), "numpy.ndarray", data)
                    for k, a in arrays.items()
                }
            )
            return
        elif how == "two records":
            content["more"] = ArrayRecord({k: Array(a) for k, a in arrays.items()})
        content[ARRAYS] = ArrayRecord({k: Array(np.asarray(a)) for k, a in arrays.items()})

    return rewrite


MALFORMED = ["(5,7)", "()", "key", "order", "int", "nan", "npz", "two records"]


@pytest.mark.parametrize("how", MALFORMED)
def test_a_train_reply_of_another_model_fails_that_owner(how: str) -> None:
    result, rounds = _run(_reshaped(how))
    assert [r["failed"] for r in rounds] == [[HOSTILE], [HOSTILE]]
    assert [r["answered"] for r in rounds] == [2, 2]
    honest, _ = _run(_claims(DECLARED, "none"))  # the run without the owner's reply
    model = _model(result)
    assert [a.shape for a in model] == [a.shape for a in _model(honest)]
    assert all(np.isfinite(a).all() for a in model)


@pytest.mark.parametrize("how", MALFORMED)
def test_below_the_minimum_a_malformed_model_stops_the_run_naming_its_owner(how: str) -> None:
    with pytest.raises(TooFewNodes) as info:
        _run(_reshaped(how), min_nodes=3)
    assert info.value.missing == (HOSTILE,) and info.value.stage == "train"


def _masking(how: str) -> Callable[[ClientApp], ClientApp]:
    """A SecAgg+ owner whose masked vectors are tampered with ``how``."""

    def wrap(honest: ClientApp) -> ClientApp:
        app = ClientApp()

        @app.train()
        def train(msg: Message, context: Context) -> Message:
            reply = honest(msg, context)
            configs = reply.content.config_records.get(RECORD_KEY_CONFIGS)
            masked = configs.get(Key.MASKED_PARAMETERS) if configs is not None else None
            if isinstance(masked, list):
                vectors = [bytes_to_ndarray(b) for b in masked]
                if how == "(5,7)":
                    vectors[1] = np.zeros((5, 7), dtype=vectors[1].dtype)
                elif how == "()":
                    vectors[1] = np.array(3, dtype=vectors[1].dtype)
                elif how == "fewer":
                    vectors.pop()
                elif how == "float":
                    vectors[1] = vectors[1].astype(np.float64)
                elif how == "modulus":
                    vectors[1] = vectors[1] + 2**40
                assert configs is not None
                configs[Key.MASKED_PARAMETERS] = [ndarray_to_bytes(v) for v in vectors]
            return Message(reply.content, reply_to=msg)

        @app.evaluate()
        def evaluate(msg: Message, context: Context) -> Message:
            return Message(honest(msg, context).content, reply_to=msg)

        @app.query("stats")
        def stats(msg: Message, context: Context) -> Message:
            return Message(honest(msg, context).content, reply_to=msg)

        return app

    return wrap


@pytest.mark.parametrize("how", ["(5,7)", "()", "fewer", "float", "modulus"])
def test_under_secagg_a_masked_vector_of_another_model_fails_that_owner(how: str) -> None:
    spec = TrainSpec(**{**SPEC.__dict__, "secagg": True, "rounds": 1})
    apps = {n: _secagg_owner(n) for n in SECAGG_NODES}
    apps[HOSTILE] = _masking(how)(apps[HOSTILE])
    rounds: list[dict[str, Any]] = []
    job = Job(RUN_ID, spec, SECAGG_NODES, 3, 60.0)
    result = worker.run(job, LocalGrid(apps)._deliver_here, rounds.append)
    assert [r["failed"] for r in rounds] == [[HOSTILE]]
    model = _model(result)
    assert [a.shape for a in model] == [(3, 1), (1,)] and all(np.isfinite(a).all() for a in model)
    assert all(np.abs(a).max() < 10 for a in model)
    with pytest.raises(TooFewNodes) as info:  # and below the minimum, named
        worker.run(replace(job, min_nodes=4), LocalGrid(apps)._deliver_here, rounds.append)
    assert info.value.missing == (HOSTILE,)


# --- a reply's metrics must be what Flower can aggregate (review, 2026-12-05) ------------


def _metrics(how: str) -> Rewrite:
    def rewrite(kind: str, content: RecordDict) -> None:
        if kind not in ("train", "evaluate"):
            return
        metrics = dict(content.metric_records[METRICS])
        loss = "train_loss" if kind == "train" else "eval_loss"
        if how == "list":
            metrics[loss] = [1.0, 2.0]
        elif how == "extra":
            metrics["zzz"] = 1.0
        elif how == "missing":
            del metrics[loss]
        elif how == "second record":
            content["more"] = MetricRecord({"x": 1.0})
        content[METRICS] = MetricRecord(metrics)

    return rewrite


@pytest.mark.parametrize("how", ["list", "second record"])
def test_a_reply_whose_metrics_flower_cannot_aggregate_fails_that_owner(how: str) -> None:
    """A loss sent as a list ended the run INTERNAL (Flower's aggregation multiplied it);
    a second metric record aborted the round for everyone."""
    result, rounds = _run(_metrics(how))
    assert [r["failed"] for r in rounds] == [[HOSTILE], [HOSTILE]]
    assert all(np.isfinite(a).all() for a in _model(result))


@pytest.mark.parametrize("first", [HOSTILE, 11])
@pytest.mark.parametrize("how", ["extra", "missing"])
def test_a_metric_more_or_less_is_cut_from_every_reply_not_the_run(how: str, first: int) -> None:
    """A metric more or less in one owner's reply aborted the round for everyone; keeping
    the names most replies had let a hostile owner win a tie (of two: by its node id).
    Now every reply keeps the names all of them have, whoever answers: nobody fails."""
    honest = 12 if first == HOSTILE else HOSTILE
    apps = {first: _owner(first, _metrics(how)), honest: _owner(honest)}
    grid = LocalGrid(apps)
    rounds: list[dict[str, Any]] = []
    job = Job(RUN_ID, SPEC, tuple(sorted(apps)), 2, 60.0)
    result = worker.run(job, grid._deliver_here, rounds.append)
    assert [r["failed"] for r in rounds] == [[], []]
    assert all(np.isfinite(a).all() for a in _model(result))
