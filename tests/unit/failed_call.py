"""What a gRPC stub raises for a failed call (an ``RpcError`` that is also a ``Call``):
gRPC's shape, not one of our components, for tests of what reads it."""

from __future__ import annotations

import grpc


class FailedCall(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str, trailing: tuple = ()) -> None:
        self._code, self._details, self._trailing = code, details, trailing

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> tuple:
        return self._trailing
