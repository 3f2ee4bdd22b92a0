"""The settings an owner trains with: the signed spec's, never the message's own.

A Flower message carries its settings in a ConfigRecord the home writes; an owner that
obeyed it would train whatever task, epochs or label classes the home chose, whatever
the signed spec and the grant say. So the settings are derived here from the spec alone;
only the round, FedProx's proximal term (in a FedProx run only) and the federation's
standardisation come from the message, and a message whose other settings differ from
the spec's is refused.
"""

from __future__ import annotations

from dataclasses import replace

from flwr.app import ConfigRecord

from federation.training.config import (
    FLOWER_PROXIMAL_MU,
    SERVER_ROUND,
    TrainConfig,
    classifies,
    server_round,
)
from federation.training.errors import TrainingError
from gateway.errors import InvalidArgument
from gateway.training.spec import TrainSpec

DEFAULT_LR = 0.1
DEFAULT_EPOCHS = 1


def train_config(spec: TrainSpec) -> TrainConfig:
    """Full batch, no holdout (evaluation on the training rows: a held-out share chosen
    by the home could be one row), the spec's classes, rate, epochs and seed."""
    classification = classifies(spec.task, spec.n_classes)
    return TrainConfig(
        task=spec.task,
        n_classes=spec.n_classes if classification else 0,
        lr=spec.learning_rate or DEFAULT_LR,
        epochs=spec.local_epochs or DEFAULT_EPOCHS,
        seed=spec.seed,
    )


def bound_record(spec: TrainSpec, rec: ConfigRecord) -> ConfigRecord:
    """The record the owner's ClientApp reads: the spec's settings, the message's round,
    proximal term and standardisation; refused where the message says otherwise."""
    try:
        got = TrainConfig.from_record(rec)
        round_ = server_round(rec)
    except TrainingError as exc:
        raise InvalidArgument(exc.reason) from None
    if got.proximal_mu and spec.strategy != "fedprox":  # the strategy's term, none else
        raise InvalidArgument(
            "the message's settings differ from the run's signed spec: a proximal term in a "
            f"run whose strategy is {spec.strategy}"
        )
    own = replace(train_config(spec), mean=got.mean, std=got.std, proximal_mu=got.proximal_mu)
    if got != own:
        raise InvalidArgument("the message's settings differ from the run's signed spec")
    out = own.to_record()
    out[SERVER_ROUND] = round_
    if FLOWER_PROXIMAL_MU in rec:
        out[FLOWER_PROXIMAL_MU] = float(own.proximal_mu)
    return out
