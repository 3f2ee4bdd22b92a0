"""Typed errors as gRPC statuses and back: codes one to one, details as metadata."""

from __future__ import annotations

import grpc

from federation.outcome import Code
from gateway.errors import FailedPrecondition, FedgateError, error_of
from gateway.status import ORIGIN, STATUS, answered_by_a_node, details_metadata, error_of_rpc
from tests.unit.failed_call import FailedCall


def test_every_code_is_the_grpc_status_of_the_same_name() -> None:
    assert {c.name for c in Code} == {s.name for s in grpc.StatusCode}
    assert all(STATUS[c].name == c.name for c in Code)


def test_details_travel_as_metadata_and_come_back() -> None:
    exc = FailedPrecondition("last witnessed size is 7", details={"last_size": "7"})
    metadata = details_metadata(exc.details)
    assert metadata == (ORIGIN, ("fedgate-detail-last-size", "7"))
    call = FailedCall(grpc.StatusCode.FAILED_PRECONDITION, exc.message, metadata)
    back = FedgateError.of(error_of_rpc(call))
    assert isinstance(back, FailedPrecondition) and back.details == {"last_size": "7"}
    assert back.error == exc.error


def test_details_that_metadata_cannot_carry_are_left_out() -> None:
    sent = details_metadata(
        {"owner": "上海", "request_id": "r" * 500, "Bad-Key": "x", "ok": "fine", "nl": "a\nb"}
    )
    assert sent == (ORIGIN, ("fedgate-detail-ok", "fine"))


def test_binary_and_foreign_metadata_is_not_a_detail() -> None:
    call = FailedCall(
        grpc.StatusCode.UNAVAILABLE,
        "",
        (("fedgate-detail-x-bin", b"\x00"), ("other", "y"), ("fedgate-detail-owner", "wuhu")),
    )
    error = error_of_rpc(call)
    assert error.code == Code.UNAVAILABLE and error.reason == "UNAVAILABLE"
    assert dict(error.details) == {"owner": "wuhu"}


def test_an_untyped_exception_is_internal_and_says_only_its_kind() -> None:
    # Review (2026-12-04): the text of a file that no longer read as declared (a cell
    # value in pyarrow's message) reached the analyst from the home's own partition.
    error = error_of(ValueError("invalid value 'Shanghai-Pudong-secret'"))
    assert error.code == Code.INTERNAL and "secret" not in error.reason
    assert error.reason.startswith("internal error ValueError (reference ")


def test_a_status_no_node_gave_is_told_apart() -> None:
    ours = FailedCall(grpc.StatusCode.INTERNAL, "internal error", details_metadata({}))
    grpcs = FailedCall(grpc.StatusCode.INTERNAL, "Received RST_STREAM with error code 2", ())
    assert answered_by_a_node(ours) and not answered_by_a_node(grpcs)


def test_only_a_generated_stub_is_unimplemented() -> None:
    """Review (2026-12-04, night): pyarrow's ArrowNotImplementedError is a
    NotImplementedError, so an Arrow failure inside a handler was answered UNIMPLEMENTED
    "X is not implemented here" and its traceback never logged."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from federation.outcome import Code
    from gateway.edge import untyped
    from gateway.rpc.v1 import gateway_pb2, gateway_pb2_grpc

    class Context:  # what the generated stub sets before it raises
        def set_code(self, _code: object) -> None: ...

        def set_details(self, _details: str) -> None: ...

    try:
        gateway_pb2_grpc.GatewayServicer().WhoAmI(gateway_pb2.WhoAmIRequest(), Context())
    except NotImplementedError as exc:
        stub = untyped("/fedgate.v1.Gateway/WhoAmI", None, exc)
    assert stub.code == Code.UNIMPLEMENTED and stub.message == "WhoAmI is not implemented here"
    try:
        pc.sum(pa.array(["a", "b"]))
    except NotImplementedError as exc:
        arrow = untyped("/fedgate.v1.Gateway/Query", None, exc)
    assert arrow.code == Code.INTERNAL and "internal error (reference" in arrow.message
