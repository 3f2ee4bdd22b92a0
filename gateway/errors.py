"""Typed errors. Code below the RPC edge raises these; the edge maps them to gRPC status."""

from __future__ import annotations

import grpc


class FedgateError(Exception):
    """Base class: carries the gRPC status it becomes at the edge."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.__class__.__name__


class InvalidArgument(FedgateError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(FedgateError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(FedgateError):
    code = grpc.StatusCode.ALREADY_EXISTS


class Unauthenticated(FedgateError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(FedgateError):
    code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(FedgateError):
    """A limit is reached: the privacy budget, a use count, a size."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class DeadlineExceeded(FedgateError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class FailedPrecondition(FedgateError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Unavailable(FedgateError):
    code = grpc.StatusCode.UNAVAILABLE


class ConfigError(FedgateError):
    """A node cannot start: the message names the field or path at fault."""

    code = grpc.StatusCode.FAILED_PRECONDITION
