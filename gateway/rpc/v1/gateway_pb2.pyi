from . import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AuditExportRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AuditChunk(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...

class AuditShowRequest(_message.Message):
    __slots__ = ("request_id",)
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    def __init__(self, request_id: _Optional[str] = ...) -> None: ...

class AuditShowResponse(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, entries: _Optional[_Iterable[str]] = ...) -> None: ...

class ReceiptsRequest(_message.Message):
    __slots__ = ("request_id", "after")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    after: int
    def __init__(self, request_id: _Optional[str] = ..., after: _Optional[int] = ...) -> None: ...

class ReceiptsResponse(_message.Message):
    __slots__ = ("receipts", "next")
    RECEIPTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_FIELD_NUMBER: _ClassVar[int]
    receipts: _containers.RepeatedScalarFieldContainer[str]
    next: int
    def __init__(self, receipts: _Optional[_Iterable[str]] = ..., next: _Optional[int] = ...) -> None: ...

class WitnessNowRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WitnessNowResponse(_message.Message):
    __slots__ = ("countersigned", "errors")
    COUNTERSIGNED_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    countersigned: _containers.RepeatedCompositeFieldContainer[_common_pb2.WitnessedHead]
    errors: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, countersigned: _Optional[_Iterable[_Union[_common_pb2.WitnessedHead, _Mapping]]] = ..., errors: _Optional[_Iterable[str]] = ...) -> None: ...

class WitnessedHeadsRequest(_message.Message):
    __slots__ = ("node", "after_size", "limit")
    NODE_FIELD_NUMBER: _ClassVar[int]
    AFTER_SIZE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    node: str
    after_size: int
    limit: int
    def __init__(self, node: _Optional[str] = ..., after_size: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class WitnessedHeadsResponse(_message.Message):
    __slots__ = ("heads",)
    HEADS_FIELD_NUMBER: _ClassVar[int]
    heads: _containers.RepeatedCompositeFieldContainer[_common_pb2.WitnessedHead]
    def __init__(self, heads: _Optional[_Iterable[_Union[_common_pb2.WitnessedHead, _Mapping]]] = ...) -> None: ...

class AccessRequestStatusRequest(_message.Message):
    __slots__ = ("owner", "id")
    OWNER_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    owner: str
    id: str
    def __init__(self, owner: _Optional[str] = ..., id: _Optional[str] = ...) -> None: ...

class ListAccessRequestsRequest(_message.Message):
    __slots__ = ("state", "after")
    STATE_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    state: str
    after: int
    def __init__(self, state: _Optional[str] = ..., after: _Optional[int] = ...) -> None: ...

class ListAccessRequestsResponse(_message.Message):
    __slots__ = ("requests", "next")
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[_common_pb2.AccessRequest]
    next: int
    def __init__(self, requests: _Optional[_Iterable[_Union[_common_pb2.AccessRequest, _Mapping]]] = ..., next: _Optional[int] = ...) -> None: ...

class DecideAccessRequestRequest(_message.Message):
    __slots__ = ("id", "approve", "note", "columns", "expires", "min_group_size", "dp_epsilon", "dp_budget", "max_uses", "train_tasks", "max_rounds")
    ID_FIELD_NUMBER: _ClassVar[int]
    APPROVE_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_FIELD_NUMBER: _ClassVar[int]
    MIN_GROUP_SIZE_FIELD_NUMBER: _ClassVar[int]
    DP_EPSILON_FIELD_NUMBER: _ClassVar[int]
    DP_BUDGET_FIELD_NUMBER: _ClassVar[int]
    MAX_USES_FIELD_NUMBER: _ClassVar[int]
    TRAIN_TASKS_FIELD_NUMBER: _ClassVar[int]
    MAX_ROUNDS_FIELD_NUMBER: _ClassVar[int]
    id: str
    approve: bool
    note: str
    columns: _containers.RepeatedCompositeFieldContainer[_common_pb2.ColumnControls]
    expires: str
    min_group_size: int
    dp_epsilon: float
    dp_budget: float
    max_uses: int
    train_tasks: _containers.RepeatedScalarFieldContainer[str]
    max_rounds: int
    def __init__(self, id: _Optional[str] = ..., approve: _Optional[bool] = ..., note: _Optional[str] = ..., columns: _Optional[_Iterable[_Union[_common_pb2.ColumnControls, _Mapping]]] = ..., expires: _Optional[str] = ..., min_group_size: _Optional[int] = ..., dp_epsilon: _Optional[float] = ..., dp_budget: _Optional[float] = ..., max_uses: _Optional[int] = ..., train_tasks: _Optional[_Iterable[str]] = ..., max_rounds: _Optional[int] = ...) -> None: ...

class DisclosureRequest(_message.Message):
    __slots__ = ("node", "since", "until")
    NODE_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    node: str
    since: str
    until: str
    def __init__(self, node: _Optional[str] = ..., since: _Optional[str] = ..., until: _Optional[str] = ...) -> None: ...

class DisclosureReport(_message.Message):
    __slots__ = ("node", "org", "generated_at", "since", "until", "grants", "usage")
    NODE_FIELD_NUMBER: _ClassVar[int]
    ORG_FIELD_NUMBER: _ClassVar[int]
    GENERATED_AT_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    GRANTS_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    node: str
    org: str
    generated_at: str
    since: str
    until: str
    grants: _containers.RepeatedCompositeFieldContainer[DisclosedGrant]
    usage: _containers.RepeatedCompositeFieldContainer[DisclosedUsage]
    def __init__(self, node: _Optional[str] = ..., org: _Optional[str] = ..., generated_at: _Optional[str] = ..., since: _Optional[str] = ..., until: _Optional[str] = ..., grants: _Optional[_Iterable[_Union[DisclosedGrant, _Mapping]]] = ..., usage: _Optional[_Iterable[_Union[DisclosedUsage, _Mapping]]] = ...) -> None: ...

class DisclosedGrant(_message.Message):
    __slots__ = ("id", "grantee_org", "grantee_kind", "dataset", "columns", "operations", "valid_from", "expires", "purpose", "status", "exact")
    ID_FIELD_NUMBER: _ClassVar[int]
    GRANTEE_ORG_FIELD_NUMBER: _ClassVar[int]
    GRANTEE_KIND_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    OPERATIONS_FIELD_NUMBER: _ClassVar[int]
    VALID_FROM_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    EXACT_FIELD_NUMBER: _ClassVar[int]
    id: str
    grantee_org: str
    grantee_kind: str
    dataset: str
    columns: _containers.RepeatedCompositeFieldContainer[_common_pb2.ColumnControls]
    operations: _containers.RepeatedScalarFieldContainer[str]
    valid_from: str
    expires: str
    purpose: str
    status: str
    exact: bool
    def __init__(self, id: _Optional[str] = ..., grantee_org: _Optional[str] = ..., grantee_kind: _Optional[str] = ..., dataset: _Optional[str] = ..., columns: _Optional[_Iterable[_Union[_common_pb2.ColumnControls, _Mapping]]] = ..., operations: _Optional[_Iterable[str]] = ..., valid_from: _Optional[str] = ..., expires: _Optional[str] = ..., purpose: _Optional[str] = ..., status: _Optional[str] = ..., exact: _Optional[bool] = ...) -> None: ...

class DisclosedUsage(_message.Message):
    __slots__ = ("dataset", "grantee_org", "requests", "releases", "refusals", "epsilon_spent")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    GRANTEE_ORG_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    RELEASES_FIELD_NUMBER: _ClassVar[int]
    REFUSALS_FIELD_NUMBER: _ClassVar[int]
    EPSILON_SPENT_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    grantee_org: str
    requests: int
    releases: int
    refusals: int
    epsilon_spent: float
    def __init__(self, dataset: _Optional[str] = ..., grantee_org: _Optional[str] = ..., requests: _Optional[int] = ..., releases: _Optional[int] = ..., refusals: _Optional[int] = ..., epsilon_spent: _Optional[float] = ...) -> None: ...

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

class AppFile(_message.Message):
    __slots__ = ("path", "data")
    PATH_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    path: str
    data: bytes
    def __init__(self, path: _Optional[str] = ..., data: _Optional[bytes] = ...) -> None: ...

class ApproveAppRequest(_message.Message):
    __slots__ = ("name", "files")
    NAME_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    name: str
    files: _containers.RepeatedCompositeFieldContainer[AppFile]
    def __init__(self, name: _Optional[str] = ..., files: _Optional[_Iterable[_Union[AppFile, _Mapping]]] = ...) -> None: ...

class AppInfo(_message.Message):
    __slots__ = ("digest", "name", "approved_by", "approved_at", "files", "size")
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    APPROVED_BY_FIELD_NUMBER: _ClassVar[int]
    APPROVED_AT_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    digest: str
    name: str
    approved_by: str
    approved_at: str
    files: int
    size: int
    def __init__(self, digest: _Optional[str] = ..., name: _Optional[str] = ..., approved_by: _Optional[str] = ..., approved_at: _Optional[str] = ..., files: _Optional[int] = ..., size: _Optional[int] = ...) -> None: ...

class ListAppsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListAppsResponse(_message.Message):
    __slots__ = ("apps",)
    APPS_FIELD_NUMBER: _ClassVar[int]
    apps: _containers.RepeatedCompositeFieldContainer[AppInfo]
    def __init__(self, apps: _Optional[_Iterable[_Union[AppInfo, _Mapping]]] = ...) -> None: ...

class RevokeAppRequest(_message.Message):
    __slots__ = ("digest",)
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    digest: str
    def __init__(self, digest: _Optional[str] = ...) -> None: ...

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

class PsiSide(_message.Message):
    __slots__ = ("node", "dataset", "column", "where")
    NODE_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    COLUMN_FIELD_NUMBER: _ClassVar[int]
    WHERE_FIELD_NUMBER: _ClassVar[int]
    node: str
    dataset: str
    column: str
    where: str
    def __init__(self, node: _Optional[str] = ..., dataset: _Optional[str] = ..., column: _Optional[str] = ..., where: _Optional[str] = ...) -> None: ...

class PsiRequest(_message.Message):
    __slots__ = ("left", "right", "purpose", "explain")
    LEFT_FIELD_NUMBER: _ClassVar[int]
    RIGHT_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    EXPLAIN_FIELD_NUMBER: _ClassVar[int]
    left: PsiSide
    right: PsiSide
    purpose: str
    explain: bool
    def __init__(self, left: _Optional[_Union[PsiSide, _Mapping]] = ..., right: _Optional[_Union[PsiSide, _Mapping]] = ..., purpose: _Optional[str] = ..., explain: _Optional[bool] = ...) -> None: ...

class PsiProgress(_message.Message):
    __slots__ = ("node_id", "stage", "done", "total")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    stage: str
    done: int
    total: int
    def __init__(self, node_id: _Optional[str] = ..., stage: _Optional[str] = ..., done: _Optional[int] = ..., total: _Optional[int] = ...) -> None: ...

class PsiLearns(_message.Message):
    __slots__ = ("party", "learns")
    PARTY_FIELD_NUMBER: _ClassVar[int]
    LEARNS_FIELD_NUMBER: _ClassVar[int]
    party: str
    learns: str
    def __init__(self, party: _Optional[str] = ..., learns: _Optional[str] = ...) -> None: ...

class PsiResult(_message.Message):
    __slots__ = ("request_id", "intersection", "suppressed", "min_group_size", "owners", "learns", "arrow_ipc", "epsilon_spent")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    INTERSECTION_FIELD_NUMBER: _ClassVar[int]
    SUPPRESSED_FIELD_NUMBER: _ClassVar[int]
    MIN_GROUP_SIZE_FIELD_NUMBER: _ClassVar[int]
    OWNERS_FIELD_NUMBER: _ClassVar[int]
    LEARNS_FIELD_NUMBER: _ClassVar[int]
    ARROW_IPC_FIELD_NUMBER: _ClassVar[int]
    EPSILON_SPENT_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    intersection: int
    suppressed: bool
    min_group_size: int
    owners: _containers.RepeatedCompositeFieldContainer[_common_pb2.OwnerResult]
    learns: _containers.RepeatedCompositeFieldContainer[PsiLearns]
    arrow_ipc: bytes
    epsilon_spent: float
    def __init__(self, request_id: _Optional[str] = ..., intersection: _Optional[int] = ..., suppressed: _Optional[bool] = ..., min_group_size: _Optional[int] = ..., owners: _Optional[_Iterable[_Union[_common_pb2.OwnerResult, _Mapping]]] = ..., learns: _Optional[_Iterable[_Union[PsiLearns, _Mapping]]] = ..., arrow_ipc: _Optional[bytes] = ..., epsilon_spent: _Optional[float] = ...) -> None: ...

class PsiEvent(_message.Message):
    __slots__ = ("progress", "result")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    progress: PsiProgress
    result: PsiResult
    def __init__(self, progress: _Optional[_Union[PsiProgress, _Mapping]] = ..., result: _Optional[_Union[PsiResult, _Mapping]] = ...) -> None: ...

class TrainRequest(_message.Message):
    __slots__ = ("task", "dataset", "features", "label", "rounds", "strategy", "nodes", "min_nodes", "seed", "purpose", "learning_rate", "local_epochs", "classes", "dp_clip", "secagg", "dp_noise")
    TASK_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    MIN_NODES_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    LOCAL_EPOCHS_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    DP_CLIP_FIELD_NUMBER: _ClassVar[int]
    SECAGG_FIELD_NUMBER: _ClassVar[int]
    DP_NOISE_FIELD_NUMBER: _ClassVar[int]
    task: str
    dataset: str
    features: _containers.RepeatedScalarFieldContainer[str]
    label: str
    rounds: int
    strategy: str
    nodes: _containers.RepeatedScalarFieldContainer[str]
    min_nodes: int
    seed: int
    purpose: str
    learning_rate: float
    local_epochs: int
    classes: int
    dp_clip: float
    secagg: bool
    dp_noise: float
    def __init__(self, task: _Optional[str] = ..., dataset: _Optional[str] = ..., features: _Optional[_Iterable[str]] = ..., label: _Optional[str] = ..., rounds: _Optional[int] = ..., strategy: _Optional[str] = ..., nodes: _Optional[_Iterable[str]] = ..., min_nodes: _Optional[int] = ..., seed: _Optional[int] = ..., purpose: _Optional[str] = ..., learning_rate: _Optional[float] = ..., local_epochs: _Optional[int] = ..., classes: _Optional[int] = ..., dp_clip: _Optional[float] = ..., secagg: _Optional[bool] = ..., dp_noise: _Optional[float] = ...) -> None: ...

class TrainRound(_message.Message):
    __slots__ = ("round", "rounds", "nodes_answered", "train_loss", "eval_loss", "eval_accuracy", "elapsed_seconds")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_FIELD_NUMBER: _ClassVar[int]
    NODES_ANSWERED_FIELD_NUMBER: _ClassVar[int]
    TRAIN_LOSS_FIELD_NUMBER: _ClassVar[int]
    EVAL_LOSS_FIELD_NUMBER: _ClassVar[int]
    EVAL_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    round: int
    rounds: int
    nodes_answered: int
    train_loss: float
    eval_loss: float
    eval_accuracy: float
    elapsed_seconds: float
    def __init__(self, round: _Optional[int] = ..., rounds: _Optional[int] = ..., nodes_answered: _Optional[int] = ..., train_loss: _Optional[float] = ..., eval_loss: _Optional[float] = ..., eval_accuracy: _Optional[float] = ..., elapsed_seconds: _Optional[float] = ...) -> None: ...

class TrainResult(_message.Message):
    __slots__ = ("run_id", "model_npz", "rounds", "owners", "task", "features", "label", "mean", "std", "classes", "dp_epsilon", "dp_delta")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_NPZ_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_FIELD_NUMBER: _ClassVar[int]
    OWNERS_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    STD_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    DP_EPSILON_FIELD_NUMBER: _ClassVar[int]
    DP_DELTA_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    model_npz: bytes
    rounds: _containers.RepeatedCompositeFieldContainer[TrainRound]
    owners: _containers.RepeatedCompositeFieldContainer[_common_pb2.OwnerResult]
    task: str
    features: _containers.RepeatedScalarFieldContainer[str]
    label: str
    mean: _containers.RepeatedScalarFieldContainer[float]
    std: _containers.RepeatedScalarFieldContainer[float]
    classes: _containers.RepeatedScalarFieldContainer[str]
    dp_epsilon: float
    dp_delta: float
    def __init__(self, run_id: _Optional[str] = ..., model_npz: _Optional[bytes] = ..., rounds: _Optional[_Iterable[_Union[TrainRound, _Mapping]]] = ..., owners: _Optional[_Iterable[_Union[_common_pb2.OwnerResult, _Mapping]]] = ..., task: _Optional[str] = ..., features: _Optional[_Iterable[str]] = ..., label: _Optional[str] = ..., mean: _Optional[_Iterable[float]] = ..., std: _Optional[_Iterable[float]] = ..., classes: _Optional[_Iterable[str]] = ..., dp_epsilon: _Optional[float] = ..., dp_delta: _Optional[float] = ...) -> None: ...

class OwnerResults(_message.Message):
    __slots__ = ("owners",)
    OWNERS_FIELD_NUMBER: _ClassVar[int]
    owners: _containers.RepeatedCompositeFieldContainer[_common_pb2.OwnerResult]
    def __init__(self, owners: _Optional[_Iterable[_Union[_common_pb2.OwnerResult, _Mapping]]] = ...) -> None: ...

class TrainEvent(_message.Message):
    __slots__ = ("round", "result", "model_piece", "owners")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    MODEL_PIECE_FIELD_NUMBER: _ClassVar[int]
    OWNERS_FIELD_NUMBER: _ClassVar[int]
    round: TrainRound
    result: TrainResult
    model_piece: bytes
    owners: OwnerResults
    def __init__(self, round: _Optional[_Union[TrainRound, _Mapping]] = ..., result: _Optional[_Union[TrainResult, _Mapping]] = ..., model_piece: _Optional[bytes] = ..., owners: _Optional[_Union[OwnerResults, _Mapping]] = ...) -> None: ...

class TrainRunsRequest(_message.Message):
    __slots__ = ("run_id",)
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    def __init__(self, run_id: _Optional[str] = ...) -> None: ...

class TrainRunStatus(_message.Message):
    __slots__ = ("run_id", "requester", "dataset", "task", "rounds", "started", "state", "round", "train_loss", "eval_accuracy", "reason", "org")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    REQUESTER_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    TRAIN_LOSS_FIELD_NUMBER: _ClassVar[int]
    EVAL_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ORG_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    requester: str
    dataset: str
    task: str
    rounds: int
    started: str
    state: str
    round: int
    train_loss: float
    eval_accuracy: float
    reason: str
    org: str
    def __init__(self, run_id: _Optional[str] = ..., requester: _Optional[str] = ..., dataset: _Optional[str] = ..., task: _Optional[str] = ..., rounds: _Optional[int] = ..., started: _Optional[str] = ..., state: _Optional[str] = ..., round: _Optional[int] = ..., train_loss: _Optional[float] = ..., eval_accuracy: _Optional[float] = ..., reason: _Optional[str] = ..., org: _Optional[str] = ...) -> None: ...

class TrainRunsResponse(_message.Message):
    __slots__ = ("runs",)
    RUNS_FIELD_NUMBER: _ClassVar[int]
    runs: _containers.RepeatedCompositeFieldContainer[TrainRunStatus]
    def __init__(self, runs: _Optional[_Iterable[_Union[TrainRunStatus, _Mapping]]] = ...) -> None: ...

class TrainCancelRequest(_message.Message):
    __slots__ = ("run_id",)
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    def __init__(self, run_id: _Optional[str] = ...) -> None: ...
