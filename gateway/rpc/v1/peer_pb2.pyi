from . import common_pb2 as _common_pb2
from . import gateway_pb2 as _gateway_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WitnessRequest(_message.Message):
    __slots__ = ("head", "from_size", "digests")
    HEAD_FIELD_NUMBER: _ClassVar[int]
    FROM_SIZE_FIELD_NUMBER: _ClassVar[int]
    DIGESTS_FIELD_NUMBER: _ClassVar[int]
    head: _common_pb2.SignedHead
    from_size: int
    digests: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, head: _Optional[_Union[_common_pb2.SignedHead, _Mapping]] = ..., from_size: _Optional[int] = ..., digests: _Optional[_Iterable[str]] = ...) -> None: ...

class PartialRequest(_message.Message):
    __slots__ = ("request_id", "sql", "requester", "home_node", "purpose", "include_children", "explain", "path", "home_cert", "home_signature", "check", "issued_at")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SQL_FIELD_NUMBER: _ClassVar[int]
    REQUESTER_FIELD_NUMBER: _ClassVar[int]
    HOME_NODE_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_CHILDREN_FIELD_NUMBER: _ClassVar[int]
    EXPLAIN_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    HOME_CERT_FIELD_NUMBER: _ClassVar[int]
    HOME_SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    CHECK_FIELD_NUMBER: _ClassVar[int]
    ISSUED_AT_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    sql: str
    requester: _common_pb2.Requester
    home_node: str
    purpose: str
    include_children: bool
    explain: bool
    path: _containers.RepeatedScalarFieldContainer[str]
    home_cert: str
    home_signature: str
    check: bool
    issued_at: str
    def __init__(self, request_id: _Optional[str] = ..., sql: _Optional[str] = ..., requester: _Optional[_Union[_common_pb2.Requester, _Mapping]] = ..., home_node: _Optional[str] = ..., purpose: _Optional[str] = ..., include_children: _Optional[bool] = ..., explain: _Optional[bool] = ..., path: _Optional[_Iterable[str]] = ..., home_cert: _Optional[str] = ..., home_signature: _Optional[str] = ..., check: _Optional[bool] = ..., issued_at: _Optional[str] = ...) -> None: ...

class PartialResponse(_message.Message):
    __slots__ = ("node_id", "published", "arrow_ipc", "owners")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    PUBLISHED_FIELD_NUMBER: _ClassVar[int]
    ARROW_IPC_FIELD_NUMBER: _ClassVar[int]
    OWNERS_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    published: bool
    arrow_ipc: bytes
    owners: _containers.RepeatedCompositeFieldContainer[_common_pb2.OwnerResult]
    def __init__(self, node_id: _Optional[str] = ..., published: _Optional[bool] = ..., arrow_ipc: _Optional[bytes] = ..., owners: _Optional[_Iterable[_Union[_common_pb2.OwnerResult, _Mapping]]] = ...) -> None: ...

class ForwardedStatusRequest(_message.Message):
    __slots__ = ("request", "requester")
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    REQUESTER_FIELD_NUMBER: _ClassVar[int]
    request: _gateway_pb2.AccessRequestStatusRequest
    requester: _common_pb2.Requester
    def __init__(self, request: _Optional[_Union[_gateway_pb2.AccessRequestStatusRequest, _Mapping]] = ..., requester: _Optional[_Union[_common_pb2.Requester, _Mapping]] = ...) -> None: ...

class PsiRunRequest(_message.Message):
    __slots__ = ("envelope",)
    ENVELOPE_FIELD_NUMBER: _ClassVar[int]
    envelope: PartialRequest
    def __init__(self, envelope: _Optional[_Union[PartialRequest, _Mapping]] = ...) -> None: ...

class PsiFrame(_message.Message):
    __slots__ = ("hello", "points", "done", "tally", "release", "sums", "opened")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    TALLY_FIELD_NUMBER: _ClassVar[int]
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    SUMS_FIELD_NUMBER: _ClassVar[int]
    OPENED_FIELD_NUMBER: _ClassVar[int]
    hello: PsiHello
    points: PsiPoints
    done: PsiDone
    tally: PsiTally
    release: _common_pb2.OwnerResult
    sums: PsiSums
    opened: PsiOpened
    def __init__(self, hello: _Optional[_Union[PsiHello, _Mapping]] = ..., points: _Optional[_Union[PsiPoints, _Mapping]] = ..., done: _Optional[_Union[PsiDone, _Mapping]] = ..., tally: _Optional[_Union[PsiTally, _Mapping]] = ..., release: _Optional[_Union[_common_pb2.OwnerResult, _Mapping]] = ..., sums: _Optional[_Union[PsiSums, _Mapping]] = ..., opened: _Optional[_Union[PsiOpened, _Mapping]] = ...) -> None: ...

class PsiHello(_message.Message):
    __slots__ = ("envelope", "set_size", "min_group_size", "version", "max_batch", "paillier_key", "value_kinds", "epsilon")
    ENVELOPE_FIELD_NUMBER: _ClassVar[int]
    SET_SIZE_FIELD_NUMBER: _ClassVar[int]
    MIN_GROUP_SIZE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_FIELD_NUMBER: _ClassVar[int]
    PAILLIER_KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_KINDS_FIELD_NUMBER: _ClassVar[int]
    EPSILON_FIELD_NUMBER: _ClassVar[int]
    envelope: PartialRequest
    set_size: int
    min_group_size: int
    version: int
    max_batch: int
    paillier_key: bytes
    value_kinds: _containers.RepeatedScalarFieldContainer[str]
    epsilon: float
    def __init__(self, envelope: _Optional[_Union[PartialRequest, _Mapping]] = ..., set_size: _Optional[int] = ..., min_group_size: _Optional[int] = ..., version: _Optional[int] = ..., max_batch: _Optional[int] = ..., paillier_key: _Optional[bytes] = ..., value_kinds: _Optional[_Iterable[str]] = ..., epsilon: _Optional[float] = ...) -> None: ...

class PsiPoints(_message.Message):
    __slots__ = ("kind", "seq", "points", "tags", "values")
    KIND_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    kind: int
    seq: int
    points: bytes
    tags: bytes
    values: bytes
    def __init__(self, kind: _Optional[int] = ..., seq: _Optional[int] = ..., points: _Optional[bytes] = ..., tags: _Optional[bytes] = ..., values: _Optional[bytes] = ...) -> None: ...

class PsiDone(_message.Message):
    __slots__ = ("kind",)
    KIND_FIELD_NUMBER: _ClassVar[int]
    kind: int
    def __init__(self, kind: _Optional[int] = ...) -> None: ...

class PsiTally(_message.Message):
    __slots__ = ("intersection", "min_group_size", "group_sizes")
    INTERSECTION_FIELD_NUMBER: _ClassVar[int]
    MIN_GROUP_SIZE_FIELD_NUMBER: _ClassVar[int]
    GROUP_SIZES_FIELD_NUMBER: _ClassVar[int]
    intersection: int
    min_group_size: int
    group_sizes: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, intersection: _Optional[int] = ..., min_group_size: _Optional[int] = ..., group_sizes: _Optional[_Iterable[int]] = ...) -> None: ...

class PsiSums(_message.Message):
    __slots__ = ("ciphertexts", "counts")
    CIPHERTEXTS_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    ciphertexts: _containers.RepeatedScalarFieldContainer[bytes]
    counts: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, ciphertexts: _Optional[_Iterable[bytes]] = ..., counts: _Optional[_Iterable[int]] = ...) -> None: ...

class PsiOpened(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, values: _Optional[_Iterable[bytes]] = ...) -> None: ...

class TrainStepRequest(_message.Message):
    __slots__ = ("envelope", "message", "total", "offset", "fetch", "transfer")
    ENVELOPE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    FETCH_FIELD_NUMBER: _ClassVar[int]
    TRANSFER_FIELD_NUMBER: _ClassVar[int]
    envelope: PartialRequest
    message: bytes
    total: int
    offset: int
    fetch: int
    transfer: str
    def __init__(self, envelope: _Optional[_Union[PartialRequest, _Mapping]] = ..., message: _Optional[bytes] = ..., total: _Optional[int] = ..., offset: _Optional[int] = ..., fetch: _Optional[int] = ..., transfer: _Optional[str] = ...) -> None: ...

class TrainStepResponse(_message.Message):
    __slots__ = ("message", "owner", "total", "offset")
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    message: bytes
    owner: _common_pb2.OwnerResult
    total: int
    offset: int
    def __init__(self, message: _Optional[bytes] = ..., owner: _Optional[_Union[_common_pb2.OwnerResult, _Mapping]] = ..., total: _Optional[int] = ..., offset: _Optional[int] = ...) -> None: ...
