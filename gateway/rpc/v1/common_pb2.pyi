from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Column(_message.Message):
    __slots__ = ("name", "type", "level", "description", "lower", "upper")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    LOWER_FIELD_NUMBER: _ClassVar[int]
    UPPER_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: str
    level: str
    description: str
    lower: float
    upper: float
    def __init__(self, name: _Optional[str] = ..., type: _Optional[str] = ..., level: _Optional[str] = ..., description: _Optional[str] = ..., lower: _Optional[float] = ..., upper: _Optional[float] = ...) -> None: ...

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
