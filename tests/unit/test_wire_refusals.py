"""A refusal read from the wire whose status says OK (review, 2026-12-05): a peer's
Release with ok=false and error_code "OK" became FedgateError(code OK), audited as
``psi.refused code=OK``, and the edge's abort with StatusCode.OK reached the home as
UNKNOWN with no message. Such a refusal is itself malformed: it is read as one."""

from __future__ import annotations

import time
from typing import Any

import grpc

from federation.outcome import Code, Error
from federation.psi import frames as f
from federation.reports import OwnerReport
from gateway import serde
from gateway.roles import psi_owner as po
from gateway.rpc.v1 import common_pb2
from gateway.status import STATUS, error_of_rpc


def test_an_owners_refusal_with_status_ok_is_read_as_malformed() -> None:
    msg = common_pb2.OwnerResult(node_id="jiangsu", ok=False, error="nope", error_code="OK")
    error = serde.owner_report_from_proto(msg).error
    assert error is not None and error.code is Code.UNAVAILABLE
    assert "malformed refusal" in error.reason and "nope" in error.reason


def test_a_psi_peers_refusal_with_status_ok_ends_the_session_with_a_status_and_reason() -> None:
    frame = f.Release(OwnerReport("jiangsu", error=Error(Code.OK, "nope")))
    wire = serde.psi_frame_to_proto(frame)
    back = serde.psi_frame_from_proto(wire, time.monotonic() + 10)
    assert isinstance(back, f.Release) and back.report.error is not None
    exc = po._refused_by_peer(back.report)
    assert exc.code is Code.UNAVAILABLE and STATUS[exc.code] is not grpc.StatusCode.OK
    assert "owner jiangsu refused: a malformed refusal" in exc.message


class _Failed(grpc.RpcError):
    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.OK

    def details(self) -> str:
        return ""

    def trailing_metadata(self) -> Any:
        return ()


def test_a_failed_call_whose_status_says_ok_is_not_read_as_ok() -> None:
    assert error_of_rpc(_Failed()).code is Code.UNKNOWN
