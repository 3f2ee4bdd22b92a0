"""Our structured errors as gRPC statuses and back: codes one to one, details as metadata.

The edge sends a typed error's code as the call's status and its details as trailing
metadata (``fedgate-detail-<key>``); the transport (node to node) and the client (user
to node) read a status and its details back into the same ``Error``. Detail values are
ASCII (node ids, request ids, sizes): gRPC metadata carries nothing else.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import grpc

from federation.outcome import Code, Error

DETAIL_PREFIX = "fedgate-detail-"
# Sent with every status our edge gives: a failure without it was not a node's answer but
# gRPC's own, about the connection (a peer that stopped or restarted under the call).
ORIGIN = ("fedgate-status", "1")

# Our status codes are gRPC's, name for name.
STATUS: dict[Code, grpc.StatusCode] = {c: grpc.StatusCode[c.name] for c in Code}


_KEY = re.compile(r"[a-z0-9_]{1,40}")
_VALUE = re.compile(r"[\x20-\x7e]{0,200}")  # what gRPC allows in a text metadata value


def details_metadata(details: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """An error's details as trailing metadata (the edge sends them with the status),
    marked as our edge's answer (``ORIGIN``).

    A detail that is not a plain key with a short printable-ASCII value is left out, so
    that a detail (say, an id a peer sent) can never keep the status itself from being
    sent."""
    return (ORIGIN,) + tuple(
        (DETAIL_PREFIX + k.replace("_", "-"), str(v))
        for k, v in details.items()
        if _KEY.fullmatch(k) and _VALUE.fullmatch(str(v))
    )


def answered_by_a_node(exc: grpc.RpcError) -> bool:
    """Whether a failed call's status came from a fedgate edge (not from gRPC itself)."""
    call: Any = exc
    return ORIGIN in tuple(call.trailing_metadata() or ())


def error_of_rpc(exc: grpc.RpcError) -> Error:
    """A failed call's status as a structured error, with the details it carried."""
    call: Any = exc  # a grpc.Call as well: code(), details(), trailing_metadata()
    code = Code.failed(call.code().name, Code.UNKNOWN)
    details: dict[str, str] = {}
    for key, value in call.trailing_metadata() or ():
        if key.startswith(DETAIL_PREFIX) and isinstance(value, str):
            details[key[len(DETAIL_PREFIX) :].replace("-", "_")] = str(value)
    return Error(code, call.details() or code.name, details)
