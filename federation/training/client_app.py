"""The owner's ClientApp for the vetted tasks, run in-process on the granted columns only.

Messages (Flower's ``RecordDict`` content, keys as Flower's strategies use them):

- ``train``: in ``arrays`` (ArrayRecord, the global model) and ``config`` (ConfigRecord,
  ``config.TrainConfig``); out ``arrays`` (the locally trained model, same keys) and
  ``metrics`` (MetricRecord: ``num-examples``, the key FedAvg weights by, ``train_loss``
  and ``update_norm``, the L2 norm of new minus received weights).
- ``evaluate``: in ``arrays`` and ``config``; out ``metrics`` with ``num-examples``,
  ``eval_loss`` and, for classification, ``eval_acc``.
- ``query.stats``: in ``config``; out ``stats`` (ArrayRecord: ``count``, and ``shift``,
  ``sum``, ``sumsq`` per feature as ``features.local_stats`` defines them; no count per
  class) for the home's standardisation.

The rows come from ``load(config)``, the owner's callable, which returns (X, y) already
restricted to the granted feature and label columns and must return the same rows in
the same order on every call (a held-out share is chosen by position). Rows are
standardised with the config's ``mean``/``std`` when it has them. Every input is checked
(``TrainingError``, raised out of the handler for the node to turn into its refusal);
the replies hold only the model, counts and aggregate statistics, never a row.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, cast

import numpy as np
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MetricRecord,
    RecordDict,
)
from flwr.client.mod import secaggplus_mod
from flwr.clientapp import ClientApp
from flwr.clientapp.typing import Mod
from flwr.common import Code as LegacyCode
from flwr.common import FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key, Stage
from flwr.compat.common import recorddict_compat as compat
from numpy.typing import NDArray

from federation.training import features
from federation.training.config import TrainConfig, server_round
from federation.training.errors import invalid
from federation.training.tasks import FloatArray, Task, task_named

Loader = Callable[[ConfigRecord], tuple[NDArray[np.generic], NDArray[np.generic]]]
# (the message's content, the trained reply's content) -> the content that leaves
Protect = Callable[[RecordDict, RecordDict], RecordDict]

ARRAYS = "arrays"
CONFIG = "config"
METRICS = "metrics"
STATS = "stats"
NUM_EXAMPLES = "num-examples"  # FedAvg's default weighted_by_key
STATS_MESSAGE = "query.stats"
STATS_FEATURES = "stats.features"  # a stats reply's ConfigRecord: the model's input names
INIT_MESSAGE = "query.init"  # a custom app's initial model, from its own init
LEGACY_CONFIG = "fitins.config"  # where a SecAgg+ round carries ``config``
LEGACY_ARRAYS = "fitins.parameters"  # ... and ``arrays``
# An owner's public keys of a SecAgg+ round, signed with its node key: in its setup reply
# (one statement), and, carried by the home, in every share-keys message (all of them)
KEY_STATEMENT = "fedgate.secagg.key"
KEY_STATEMENTS = "fedgate.secagg.keys"
# The digest of the global model an owner masked its update of, signed: in its masked
# training reply (one), and, carried by the home, in every unmask message (all of them):
# an owner unmasks only when every owner of the round was sent the same model
MODEL_STATEMENT = "fedgate.secagg.model"
MODEL_STATEMENTS = "fedgate.secagg.models"
# Flower's SecAgg+ stages as the steps of a round (the masked training is its ``train``)
STAGES = {
    Stage.SETUP: "secagg.setup",
    Stage.SHARE_KEYS: "secagg.share_keys",
    Stage.COLLECT_MASKED_VECTORS: "train",
    Stage.UNMASK: "secagg.unmask",
}
_HOLDOUT_STREAM = 0x686F6C64  # keeps the holdout draw apart from the per-round seeds


# The float types a model may travel in: a wider one (float128) holds values that are
# finite in it and inf once taken to float64, where DP's clip made them NaN at the
# positions an app chose, past the noise (review, 2026-12-05).
FLOATS = frozenset({np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)})


def plain_floats(a: np.ndarray) -> bool:
    """An array of float16/32/64, every value finite."""
    return a.dtype in FLOATS and bool(np.isfinite(a).all())


def make_client_app(
    load: Loader,
    *,
    train_mods: Sequence[Mod] = (),
    secagg: bool = False,
    protect: Protect | None = None,
    stay_if_diverged: bool = False,
) -> ClientApp:
    """A ClientApp answering train, evaluate and query.stats from ``load``'s rows.

    ``train_mods`` wrap the train handler only (e.g. Flower's ``fixedclipping_mod`` for
    client-side DP clipping, which reads the one ArrayRecord and ConfigRecord we send).
    With ``secagg`` the train handler speaks SecAgg+ (Flower's ``secaggplus_mod``, its
    state kept in the ``Context``): only a masked update leaves. ``protect`` rewrites a
    trained model before it leaves or is masked (the owner's DP clipping and noise).
    ``stay_if_diverged``: a round that diverges answers the model it got (see
    ``Task.fit``) rather than an error, as an owner under DP must.
    """
    app = ClientApp()
    guard = protect or _unprotected

    if secagg:

        @app.train(mods=[*train_mods, secaggplus_mod])
        def _secagg_train(msg: Message, context: Context) -> Message:
            content = legacy_train_content(load, msg.content, guard, stay_if_diverged)
            return Message(content, reply_to=msg)

    else:

        @app.train(mods=list(train_mods))
        def _train(msg: Message, context: Context) -> Message:
            content = train_content(load, msg.content, stay_if_diverged)
            return Message(guard(msg.content, content), reply_to=msg)

    @app.evaluate()
    def _evaluate(msg: Message, context: Context) -> Message:
        return Message(evaluate_content(load, msg.content), reply_to=msg)

    @app.query("stats")
    def _stats(msg: Message, context: Context) -> Message:
        return Message(stats_content(load, msg.content), reply_to=msg)

    return app


def train_content(load: Loader, content: RecordDict, stay_if_diverged: bool = False) -> RecordDict:
    """One round of local training: the reply's content."""
    rec = _config(content)
    cfg = TrainConfig.from_record(rec)
    task = task_named(cfg.task)
    X, y = _rows(load, rec, cfg, evaluation=False)
    keys, start = _model(content, task, cfg, X, y)
    new, loss = task.fit(
        start,
        X,
        y,
        epochs=cfg.epochs,
        lr=cfg.lr,
        batch_size=cfg.batch_size,
        seed=round_seed(cfg.seed, server_round(rec)),
        proximal_mu=cfg.proximal_mu,
        class_weight=np.array(cfg.class_weight) if cfg.class_weight else None,
        stay_if_diverged=stay_if_diverged,
    )
    norm = math.sqrt(sum(float(np.sum((a - b) ** 2)) for a, b in zip(new, start, strict=True)))
    arrays = ArrayRecord(
        {k: Array(np.ascontiguousarray(v)) for k, v in zip(keys, new, strict=True)}
    )
    metrics = MetricRecord({NUM_EXAMPLES: int(X.shape[0]), "train_loss": loss, "update_norm": norm})
    return RecordDict({ARRAYS: arrays, METRICS: metrics})


def legacy_train_content(
    load: Loader, content: RecordDict, protect: Protect, stay_if_diverged: bool = False
) -> RecordDict:
    """A round in the legacy form SecAgg+ masks: ``fitins.*`` in, ``fitres.*`` out. Only
    ``num_examples`` and ``train_loss`` go beside the masked model (no update norm)."""
    try:
        params = compat.arrayrecord_to_parameters(
            content.array_records[LEGACY_ARRAYS], keep_input=True
        )
        arrays = parameters_to_ndarrays(params)
    except (KeyError, TypeError, ValueError, OSError, EOFError) as e:
        raise invalid("a SecAgg+ round without its model") from e
    config = content.config_records.get(LEGACY_CONFIG)
    if config is None:
        raise invalid("a SecAgg+ round without its settings")
    ours = RecordDict(
        {ARRAYS: ArrayRecord([np.asarray(a) for a in arrays]), CONFIG: ConfigRecord(dict(config))}
    )
    reply = protect(ours, train_content(load, ours, stay_if_diverged))
    metrics = reply.metric_records[METRICS]
    examples, loss = metrics[NUM_EXAMPLES], metrics.get("train_loss")
    res = FitRes(
        Status(LegacyCode.OK, ""),
        ndarrays_to_parameters(reply.array_records[ARRAYS].to_numpy_ndarrays()),
        int(cast(int, examples)),
        {} if loss is None else {"train_loss": float(cast(float, loss))},
    )
    return compat.fitres_to_recorddict(res, keep_input=False)


def _unprotected(received: RecordDict, reply: RecordDict) -> RecordDict:
    return reply


def evaluate_content(load: Loader, content: RecordDict) -> RecordDict:
    """Loss (and accuracy) of the received model on the owner's evaluation rows."""
    rec = _config(content)
    cfg = TrainConfig.from_record(rec)
    task = task_named(cfg.task)
    X, y = _rows(load, rec, cfg, evaluation=True)
    _, arrays = _model(content, task, cfg, X, y)
    loss, acc = task.evaluate(arrays, X, y)
    values: dict[str, int | float | list[int] | list[float]] = {
        NUM_EXAMPLES: int(X.shape[0]),
        "eval_loss": loss,
    }
    if acc is not None:
        values["eval_acc"] = acc
    return RecordDict({METRICS: MetricRecord(values)})


def stats_content(load: Loader, content: RecordDict) -> RecordDict:
    """Per-feature moments of the owner's training rows (unscaled). No count per class:
    a class held by fewer than k rows would be an exact count under the grant's k."""
    rec = _config(content)
    cfg = TrainConfig.from_record(rec)
    X, _ = _rows(load, rec, cfg, evaluation=False, scaled=False)
    s = features.local_stats(X)
    arrays = {
        "count": Array(np.array(s.count, dtype=np.int64)),
        "shift": Array(s.shift),
        "sum": Array(s.sum),
        "sumsq": Array(s.sumsq),
    }
    return RecordDict({STATS: ArrayRecord(arrays)})


def read_stats(content: RecordDict) -> features.Stats:
    """An owner's ``query.stats`` reply, checked: its row count and moments."""
    rec = content.get(STATS)
    moments = ("shift", "sum", "sumsq")
    if not isinstance(rec, ArrayRecord) or not {"count", *moments} <= set(rec.keys()):
        raise invalid("a stats reply has no count, shift, sum and sumsq")
    count = _decode(rec["count"])
    if count.shape != () or count.dtype.kind not in "iu" or int(count) < 0:
        raise invalid("a stats reply's count is not a non-negative integer")
    shift, total, sumsq = (_decode(rec[k]) for k in moments)
    if shift.ndim != 1 or any(
        a.shape != shift.shape or a.dtype not in FLOATS for a in (shift, total, sumsq)
    ):
        raise invalid("a stats reply's moments are not one number per feature")
    if not all(np.isfinite(a).all() for a in (shift, total, sumsq)) or (sumsq < 0).any():
        raise invalid("a stats reply holds a value that is not finite")
    return features.Stats(
        int(count), shift.astype(np.float64), total.astype(np.float64), sumsq.astype(np.float64)
    )


def stage_of(message: Message) -> str:
    """The step a message asks: its SecAgg+ stage (the masked training round is
    ``train``), else its message type. Only a ``train`` message has stages, as only it
    reaches ``secaggplus_mod``."""
    if message.metadata.message_type == "train" and message.has_content():
        rec = message.content.config_records.get(RECORD_KEY_CONFIGS)
        if rec is not None:
            stage = rec.get(Key.STAGE)
            return STAGES.get(stage, "secagg.unknown") if isinstance(stage, str) else "secagg."
    return message.metadata.message_type


def read_names(content: RecordDict) -> tuple[str, ...]:
    """The model's input names a stats reply gives (empty when it gives none)."""
    rec = content.config_records.get(STATS_FEATURES)
    names = rec.get("names") if rec is not None else None
    if names is None:
        return ()
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise invalid("a stats reply's feature names are not names")
    return tuple(str(n) for n in names)


def round_seed(seed: int, server_round: int) -> int:
    """The seed of one round's mini-batch order: fixed by the run's seed and the round."""
    return int(np.random.SeedSequence([seed, server_round]).generate_state(1, np.uint64)[0])


def _config(content: RecordDict) -> ConfigRecord:
    rec = content.get(CONFIG)
    if not isinstance(rec, ConfigRecord):
        raise invalid(f"the message has no ConfigRecord {CONFIG!r}")
    return rec


def _model(
    content: RecordDict, task: Task, cfg: TrainConfig, X: FloatArray, y: NDArray[np.generic]
) -> tuple[list[str], list[FloatArray]]:
    """The received model's keys (kept for the reply) and checked float64 arrays, of
    exactly the shapes the task has for these rows and the run's classes."""
    rec = content.get(ARRAYS)
    if not isinstance(rec, ArrayRecord) or not len(rec):
        raise invalid(f"the message has no ArrayRecord {ARRAYS!r}")
    keys = list(rec.keys())
    outputs = cfg.n_classes if task.classification else (y.shape[1] if y.ndim == 2 else 1)
    shapes = task.shapes(X.shape[1], outputs)
    return keys, task.check([_decode(rec[k]) for k in keys], shapes)


def _decode(array: Array) -> NDArray[Any]:
    try:
        return array.numpy()
    except (TypeError, ValueError, OSError, EOFError) as e:
        raise invalid("an array in the message cannot be read") from e


def _rows(
    load: Loader, rec: ConfigRecord, cfg: TrainConfig, *, evaluation: bool, scaled: bool = True
) -> tuple[FloatArray, NDArray[np.generic]]:
    """The owner's rows for this step: standardised, and split if there is a holdout."""
    X_raw, y = load(rec)
    X = np.asarray(X_raw, dtype=np.float64)
    y = np.asarray(y)
    if X.ndim != 2 or y.shape[:1] != X.shape[:1]:
        raise invalid("the loaded rows are not a feature table with one label per row")
    if scaled and cfg.mean:
        X = features.standardise(X, np.array(cfg.mean), np.array(cfg.std))
    if cfg.holdout > 0:
        n = X.shape[0]
        n_eval = int(cfg.holdout * n)
        if n_eval == 0 or n_eval == n:
            raise invalid(f"{n} rows are too few to hold out {cfg.holdout:g} of them")
        order = np.random.default_rng([cfg.seed, _HOLDOUT_STREAM]).permutation(n)
        idx = np.sort(order[:n_eval] if evaluation else order[n_eval:])
        X, y = X[idx], y[idx]
    return X, y
