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
    __slots__ = ("request_id", "sql", "requester", "home_node", "purpose", "include_children", "explain", "path", "home_cert", "home_signature", "check")
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
    def __init__(self, request_id: _Optional[str] = ..., sql: _Optional[str] = ..., requester: _Optional[_Union[_common_pb2.Requester, _Mapping]] = ..., home_node: _Optional[str] = ..., purpose: _Optional[str] = ..., include_children: _Optional[bool] = ..., explain: _Optional[bool] = ..., path: _Optional[_Iterable[str]] = ..., home_cert: _Optional[str] = ..., home_signature: _Optional[str] = ..., check: _Optional[bool] = ...) -> None: ...

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
