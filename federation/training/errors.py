"""The errors of the training code: a status code and a reason for the user.

``federation/training`` cannot raise ``gateway.errors.*``; the node turns a
``TrainingError`` into its own typed error with the same code. Reasons are plain English
and never hold a data value.
"""

from __future__ import annotations

from federation.outcome import Code


class TrainingError(Exception):
    """A training step refused its input (a config, a model, rows, a reply)."""

    def __init__(self, code: Code, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


class TooFewNodes(TrainingError):
    """Fewer nodes answered a round than the strategy's minimum: the run stops.

    ``missing`` holds the Flower node ids that were asked and gave no usable reply; the
    node maps them to member names for the user.
    """

    def __init__(
        self, stage: str, server_round: int, answered: int, minimum: int, missing: tuple[int, ...]
    ) -> None:
        super().__init__(
            Code.UNAVAILABLE,
            f"round {server_round} ({stage}): {answered} node(s) answered, "
            f"the strategy needs {minimum}",
        )
        self.stage = stage
        self.server_round = server_round
        self.missing = missing


def invalid(reason: str) -> TrainingError:
    """The usual refusal: bad arguments from the caller or the message."""
    return TrainingError(Code.INVALID_ARGUMENT, reason)
