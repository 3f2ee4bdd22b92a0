from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Column(_message.Message):
    __slots__ = ("name", "type", "level", "description", "lower", "upper", "categories")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    LOWER_FIELD_NUMBER: _ClassVar[int]
    UPPER_FIELD_NUMBER: _ClassVar[int]
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: str
    level: str
    description: str
    lower: float
    upper: float
    categories: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., type: _Optional[str] = ..., level: _Optional[str] = ..., description: _Optional[str] = ..., lower: _Optional[float] = ..., upper: _Optional[float] = ..., categories: _Optional[_Iterable[str]] = ...) -> None: ...

class ColumnQuality(_message.Message):
    __slots__ = ("name", "null_rate", "min", "max")
    NAME_FIELD_NUMBER: _ClassVar[int]
    NULL_RATE_FIELD_NUMBER: _ClassVar[int]
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    name: str
    null_rate: float
    min: float
    max: float
    def __init__(self, name: _Optional[str] = ..., null_rate: _Optional[float] = ..., min: _Optional[float] = ..., max: _Optional[float] = ...) -> None: ...

class QualityReport(_message.Message):
    __slots__ = ("rows", "columns", "file_bytes", "sha256")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    FILE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    rows: int
    columns: _containers.RepeatedCompositeFieldContainer[ColumnQuality]
    file_bytes: int
    sha256: str
    def __init__(self, rows: _Optional[int] = ..., columns: _Optional[_Iterable[_Union[ColumnQuality, _Mapping]]] = ..., file_bytes: _Optional[int] = ..., sha256: _Optional[str] = ...) -> None: ...

class DatasetInfo(_message.Message):
    __slots__ = ("node_id", "name", "title", "description", "department", "level", "update_frequency", "columns", "rows", "registered_at", "updated_at", "quality", "format")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    DEPARTMENT_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    UPDATE_FREQUENCY_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    name: str
    title: str
    description: str
    department: str
    level: str
    update_frequency: str
    columns: _containers.RepeatedCompositeFieldContainer[Column]
    rows: int
    registered_at: str
    updated_at: str
    quality: QualityReport
    format: str
    def __init__(self, node_id: _Optional[str] = ..., name: _Optional[str] = ..., title: _Optional[str] = ..., description: _Optional[str] = ..., department: _Optional[str] = ..., level: _Optional[str] = ..., update_frequency: _Optional[str] = ..., columns: _Optional[_Iterable[_Union[Column, _Mapping]]] = ..., rows: _Optional[int] = ..., registered_at: _Optional[str] = ..., updated_at: _Optional[str] = ..., quality: _Optional[_Union[QualityReport, _Mapping]] = ..., format: _Optional[str] = ...) -> None: ...

class CatalogRequest(_message.Message):
    __slots__ = ("name_contains",)
    NAME_CONTAINS_FIELD_NUMBER: _ClassVar[int]
    name_contains: str
    def __init__(self, name_contains: _Optional[str] = ...) -> None: ...

class CatalogResponse(_message.Message):
    __slots__ = ("node_id", "datasets")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    datasets: _containers.RepeatedCompositeFieldContainer[DatasetInfo]
    def __init__(self, node_id: _Optional[str] = ..., datasets: _Optional[_Iterable[_Union[DatasetInfo, _Mapping]]] = ...) -> None: ...

class Requester(_message.Message):
    __slots__ = ("role", "id", "org")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    ORG_FIELD_NUMBER: _ClassVar[int]
    role: str
    id: str
    org: str
    def __init__(self, role: _Optional[str] = ..., id: _Optional[str] = ..., org: _Optional[str] = ...) -> None: ...

class Explanation(_message.Message):
    __slots__ = ("grant_id", "level", "min_group_size", "epsilon", "columns", "budget_left", "l2_noise")
    GRANT_ID_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    MIN_GROUP_SIZE_FIELD_NUMBER: _ClassVar[int]
    EPSILON_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    BUDGET_LEFT_FIELD_NUMBER: _ClassVar[int]
    L2_NOISE_FIELD_NUMBER: _ClassVar[int]
    grant_id: str
    level: str
    min_group_size: int
    epsilon: float
    columns: _containers.RepeatedCompositeFieldContainer[ColumnRoles]
    budget_left: float
    l2_noise: bool
    def __init__(self, grant_id: _Optional[str] = ..., level: _Optional[str] = ..., min_group_size: _Optional[int] = ..., epsilon: _Optional[float] = ..., columns: _Optional[_Iterable[_Union[ColumnRoles, _Mapping]]] = ..., budget_left: _Optional[float] = ..., l2_noise: _Optional[bool] = ...) -> None: ...

class ColumnRoles(_message.Message):
    __slots__ = ("column", "roles")
    COLUMN_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    column: str
    roles: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, column: _Optional[str] = ..., roles: _Optional[_Iterable[str]] = ...) -> None: ...

class OwnerResult(_message.Message):
    __slots__ = ("node_id", "ok", "error", "groups_released", "epsilon", "grant_id", "receipt", "via", "error_code", "explanation", "l2_noise", "no_spend")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    GROUPS_RELEASED_FIELD_NUMBER: _ClassVar[int]
    EPSILON_FIELD_NUMBER: _ClassVar[int]
    GRANT_ID_FIELD_NUMBER: _ClassVar[int]
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    VIA_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    EXPLANATION_FIELD_NUMBER: _ClassVar[int]
    L2_NOISE_FIELD_NUMBER: _ClassVar[int]
    NO_SPEND_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    ok: bool
    error: str
    groups_released: int
    epsilon: float
    grant_id: str
    receipt: str
    via: str
    error_code: str
    explanation: Explanation
    l2_noise: bool
    no_spend: bool
    def __init__(self, node_id: _Optional[str] = ..., ok: _Optional[bool] = ..., error: _Optional[str] = ..., groups_released: _Optional[int] = ..., epsilon: _Optional[float] = ..., grant_id: _Optional[str] = ..., receipt: _Optional[str] = ..., via: _Optional[str] = ..., error_code: _Optional[str] = ..., explanation: _Optional[_Union[Explanation, _Mapping]] = ..., l2_noise: _Optional[bool] = ..., no_spend: _Optional[bool] = ...) -> None: ...

class ColumnControls(_message.Message):
    __slots__ = ("column", "controls")
    COLUMN_FIELD_NUMBER: _ClassVar[int]
    CONTROLS_FIELD_NUMBER: _ClassVar[int]
    column: str
    controls: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, column: _Optional[str] = ..., controls: _Optional[_Iterable[str]] = ...) -> None: ...

class Grant(_message.Message):
    __slots__ = ("id", "dataset", "grantee_kind", "grantee", "operations", "columns", "min_group_size", "dp_epsilon", "dp_budget", "purpose", "valid_from", "expires", "max_uses", "uses", "epsilon_spent", "revoked_at", "created_by", "created_at", "status", "grantee_org", "exact", "train_tasks", "max_rounds", "max_examples")
    ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    GRANTEE_KIND_FIELD_NUMBER: _ClassVar[int]
    GRANTEE_FIELD_NUMBER: _ClassVar[int]
    OPERATIONS_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    MIN_GROUP_SIZE_FIELD_NUMBER: _ClassVar[int]
    DP_EPSILON_FIELD_NUMBER: _ClassVar[int]
    DP_BUDGET_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    VALID_FROM_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_FIELD_NUMBER: _ClassVar[int]
    MAX_USES_FIELD_NUMBER: _ClassVar[int]
    USES_FIELD_NUMBER: _ClassVar[int]
    EPSILON_SPENT_FIELD_NUMBER: _ClassVar[int]
    REVOKED_AT_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    GRANTEE_ORG_FIELD_NUMBER: _ClassVar[int]
    EXACT_FIELD_NUMBER: _ClassVar[int]
    TRAIN_TASKS_FIELD_NUMBER: _ClassVar[int]
    MAX_ROUNDS_FIELD_NUMBER: _ClassVar[int]
    MAX_EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    id: str
    dataset: str
    grantee_kind: str
    grantee: str
    operations: _containers.RepeatedScalarFieldContainer[str]
    columns: _containers.RepeatedCompositeFieldContainer[ColumnControls]
    min_group_size: int
    dp_epsilon: float
    dp_budget: float
    purpose: str
    valid_from: str
    expires: str
    max_uses: int
    uses: int
    epsilon_spent: float
    revoked_at: str
    created_by: str
    created_at: str
    status: str
    grantee_org: str
    exact: bool
    train_tasks: _containers.RepeatedScalarFieldContainer[str]
    max_rounds: int
    max_examples: int
    def __init__(self, id: _Optional[str] = ..., dataset: _Optional[str] = ..., grantee_kind: _Optional[str] = ..., grantee: _Optional[str] = ..., operations: _Optional[_Iterable[str]] = ..., columns: _Optional[_Iterable[_Union[ColumnControls, _Mapping]]] = ..., min_group_size: _Optional[int] = ..., dp_epsilon: _Optional[float] = ..., dp_budget: _Optional[float] = ..., purpose: _Optional[str] = ..., valid_from: _Optional[str] = ..., expires: _Optional[str] = ..., max_uses: _Optional[int] = ..., uses: _Optional[int] = ..., epsilon_spent: _Optional[float] = ..., revoked_at: _Optional[str] = ..., created_by: _Optional[str] = ..., created_at: _Optional[str] = ..., status: _Optional[str] = ..., grantee_org: _Optional[str] = ..., exact: _Optional[bool] = ..., train_tasks: _Optional[_Iterable[str]] = ..., max_rounds: _Optional[int] = ..., max_examples: _Optional[int] = ...) -> None: ...

class SignedHead(_message.Message):
    __slots__ = ("node", "size", "head", "time", "signature")
    NODE_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    HEAD_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    node: str
    size: int
    head: str
    time: str
    signature: str
    def __init__(self, node: _Optional[str] = ..., size: _Optional[int] = ..., head: _Optional[str] = ..., time: _Optional[str] = ..., signature: _Optional[str] = ...) -> None: ...

class WitnessedHead(_message.Message):
    __slots__ = ("witness", "node", "size", "head", "time", "countersignature", "witness_cert")
    WITNESS_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    HEAD_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    COUNTERSIGNATURE_FIELD_NUMBER: _ClassVar[int]
    WITNESS_CERT_FIELD_NUMBER: _ClassVar[int]
    witness: str
    node: str
    size: int
    head: str
    time: str
    countersignature: str
    witness_cert: str
    def __init__(self, witness: _Optional[str] = ..., node: _Optional[str] = ..., size: _Optional[int] = ..., head: _Optional[str] = ..., time: _Optional[str] = ..., countersignature: _Optional[str] = ..., witness_cert: _Optional[str] = ...) -> None: ...

class AccessRequest(_message.Message):
    __slots__ = ("id", "owner", "dataset", "requester", "home_node", "columns", "operations", "purpose", "valid_from", "expires", "state", "decided_by", "decision_note", "grant_id", "submitted_at", "decided_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    REQUESTER_FIELD_NUMBER: _ClassVar[int]
    HOME_NODE_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    OPERATIONS_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    VALID_FROM_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    DECIDED_BY_FIELD_NUMBER: _ClassVar[int]
    DECISION_NOTE_FIELD_NUMBER: _ClassVar[int]
    GRANT_ID_FIELD_NUMBER: _ClassVar[int]
    SUBMITTED_AT_FIELD_NUMBER: _ClassVar[int]
    DECIDED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    owner: str
    dataset: str
    requester: Requester
    home_node: str
    columns: _containers.RepeatedCompositeFieldContainer[ColumnControls]
    operations: _containers.RepeatedScalarFieldContainer[str]
    purpose: str
    valid_from: str
    expires: str
    state: str
    decided_by: str
    decision_note: str
    grant_id: str
    submitted_at: str
    decided_at: str
    def __init__(self, id: _Optional[str] = ..., owner: _Optional[str] = ..., dataset: _Optional[str] = ..., requester: _Optional[_Union[Requester, _Mapping]] = ..., home_node: _Optional[str] = ..., columns: _Optional[_Iterable[_Union[ColumnControls, _Mapping]]] = ..., operations: _Optional[_Iterable[str]] = ..., purpose: _Optional[str] = ..., valid_from: _Optional[str] = ..., expires: _Optional[str] = ..., state: _Optional[str] = ..., decided_by: _Optional[str] = ..., decision_note: _Optional[str] = ..., grant_id: _Optional[str] = ..., submitted_at: _Optional[str] = ..., decided_at: _Optional[str] = ...) -> None: ...
