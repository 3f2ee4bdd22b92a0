from . import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class QueryRequest(_message.Message):
    __slots__ = ("sql", "purpose", "allow_partial", "nodes", "explain")
    SQL_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    ALLOW_PARTIAL_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    EXPLAIN_FIELD_NUMBER: _ClassVar[int]
    sql: str
    purpose: str
    allow_partial: bool
    nodes: _containers.RepeatedScalarFieldContainer[str]
    explain: bool
    def __init__(self, sql: _Optional[str] = ..., purpose: _Optional[str] = ..., allow_partial: _Optional[bool] = ..., nodes: _Optional[_Iterable[str]] = ..., explain: _Optional[bool] = ...) -> None: ...

class QueryResponse(_message.Message):
    __slots__ = ("request_id", "arrow_ipc", "owners", "missing", "epsilon_spent", "plan", "plan_digest")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ARROW_IPC_FIELD_NUMBER: _ClassVar[int]
    OWNERS_FIELD_NUMBER: _ClassVar[int]
    MISSING_FIELD_NUMBER: _ClassVar[int]
    EPSILON_SPENT_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    PLAN_DIGEST_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    arrow_ipc: bytes
    owners: _containers.RepeatedCompositeFieldContainer[_common_pb2.OwnerResult]
    missing: _containers.RepeatedScalarFieldContainer[str]
    epsilon_spent: float
    plan: str
    plan_digest: str
    def __init__(self, request_id: _Optional[str] = ..., arrow_ipc: _Optional[bytes] = ..., owners: _Optional[_Iterable[_Union[_common_pb2.OwnerResult, _Mapping]]] = ..., missing: _Optional[_Iterable[str]] = ..., epsilon_spent: _Optional[float] = ..., plan: _Optional[str] = ..., plan_digest: _Optional[str] = ...) -> None: ...

class AddGrantRequest(_message.Message):
    __slots__ = ("grant",)
    GRANT_FIELD_NUMBER: _ClassVar[int]
    grant: _common_pb2.Grant
    def __init__(self, grant: _Optional[_Union[_common_pb2.Grant, _Mapping]] = ...) -> None: ...

class ListGrantsRequest(_message.Message):
    __slots__ = ("dataset",)
    DATASET_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    def __init__(self, dataset: _Optional[str] = ...) -> None: ...

class ListGrantsResponse(_message.Message):
    __slots__ = ("grants",)
    GRANTS_FIELD_NUMBER: _ClassVar[int]
    grants: _containers.RepeatedCompositeFieldContainer[_common_pb2.Grant]
    def __init__(self, grants: _Optional[_Iterable[_Union[_common_pb2.Grant, _Mapping]]] = ...) -> None: ...

class RevokeGrantRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class WhoAmIRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WhoAmIResponse(_message.Message):
    __slots__ = ("node_id", "node_org", "node_level", "caller_role", "caller_id", "caller_org", "caller_serial")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_ORG_FIELD_NUMBER: _ClassVar[int]
    NODE_LEVEL_FIELD_NUMBER: _ClassVar[int]
    CALLER_ROLE_FIELD_NUMBER: _ClassVar[int]
    CALLER_ID_FIELD_NUMBER: _ClassVar[int]
    CALLER_ORG_FIELD_NUMBER: _ClassVar[int]
    CALLER_SERIAL_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    node_org: str
    node_level: str
    caller_role: str
    caller_id: str
    caller_org: str
    caller_serial: str
    def __init__(self, node_id: _Optional[str] = ..., node_org: _Optional[str] = ..., node_level: _Optional[str] = ..., caller_role: _Optional[str] = ..., caller_id: _Optional[str] = ..., caller_org: _Optional[str] = ..., caller_serial: _Optional[str] = ...) -> None: ...

class FederatedCatalogRequest(_message.Message):
    __slots__ = ("name_contains", "timeout_seconds")
    NAME_CONTAINS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    name_contains: str
    timeout_seconds: float
    def __init__(self, name_contains: _Optional[str] = ..., timeout_seconds: _Optional[float] = ...) -> None: ...

class MemberCatalog(_message.Message):
    __slots__ = ("node_id", "org", "level", "parent", "address", "reachable", "error", "datasets", "latency_ms")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ORG_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    PARENT_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    REACHABLE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    org: str
    level: str
    parent: str
    address: str
    reachable: bool
    error: str
    datasets: _containers.RepeatedCompositeFieldContainer[_common_pb2.DatasetInfo]
    latency_ms: float
    def __init__(self, node_id: _Optional[str] = ..., org: _Optional[str] = ..., level: _Optional[str] = ..., parent: _Optional[str] = ..., address: _Optional[str] = ..., reachable: _Optional[bool] = ..., error: _Optional[str] = ..., datasets: _Optional[_Iterable[_Union[_common_pb2.DatasetInfo, _Mapping]]] = ..., latency_ms: _Optional[float] = ...) -> None: ...

class FederatedCatalogResponse(_message.Message):
    __slots__ = ("home_node", "members")
    HOME_NODE_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    home_node: str
    members: _containers.RepeatedCompositeFieldContainer[MemberCatalog]
    def __init__(self, home_node: _Optional[str] = ..., members: _Optional[_Iterable[_Union[MemberCatalog, _Mapping]]] = ...) -> None: ...

class DatasetDeclaration(_message.Message):
    __slots__ = ("name", "title", "description", "department", "level", "update_frequency", "path", "format", "columns")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    DEPARTMENT_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    UPDATE_FREQUENCY_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    name: str
    title: str
    description: str
    department: str
    level: str
    update_frequency: str
    path: str
    format: str
    columns: _containers.RepeatedCompositeFieldContainer[_common_pb2.Column]
    def __init__(self, name: _Optional[str] = ..., title: _Optional[str] = ..., description: _Optional[str] = ..., department: _Optional[str] = ..., level: _Optional[str] = ..., update_frequency: _Optional[str] = ..., path: _Optional[str] = ..., format: _Optional[str] = ..., columns: _Optional[_Iterable[_Union[_common_pb2.Column, _Mapping]]] = ...) -> None: ...

class RegisterDatasetRequest(_message.Message):
    __slots__ = ("dataset",)
    DATASET_FIELD_NUMBER: _ClassVar[int]
    dataset: DatasetDeclaration
    def __init__(self, dataset: _Optional[_Union[DatasetDeclaration, _Mapping]] = ...) -> None: ...

class RegisterDatasetResponse(_message.Message):
    __slots__ = ("dataset", "replaced")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    REPLACED_FIELD_NUMBER: _ClassVar[int]
    dataset: _common_pb2.DatasetInfo
    replaced: bool
    def __init__(self, dataset: _Optional[_Union[_common_pb2.DatasetInfo, _Mapping]] = ..., replaced: _Optional[bool] = ...) -> None: ...
