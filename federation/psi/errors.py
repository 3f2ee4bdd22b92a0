"""The one error of the PSI protocol code: a status code and a reason for the user.

``federation/psi`` is pure protocol math and cannot raise ``gateway.errors.*``; the node
turns a ``PsiError`` into its own typed error with the same code. The reason is plain
English and never holds a point, a scalar or an identifier.
"""

from __future__ import annotations

from federation.outcome import Code


class PsiError(Exception):
    """A PSI step refused its input (a peer's points, a batch, a set size)."""

    def __init__(self, code: Code, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


def invalid(reason: str) -> PsiError:
    """The usual refusal: a peer's or the caller's input out of the protocol."""
    return PsiError(Code.INVALID_ARGUMENT, reason)
