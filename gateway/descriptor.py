"""Dataset descriptors: what an operator declares about a file before it joins the catalog.

A descriptor is a small TOML file next to the data. It is the *declared* schema; the
registration check (``quality.py``) compares the real file against it.
"""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.column_types import parse_type
from gateway.errors import InvalidArgument

LEVELS = ("L1", "L2", "L3", "L4")
FORMATS = ("parquet", "csv")
FREQUENCIES = ("realtime", "daily", "weekly", "monthly", "quarterly", "yearly", "static")
_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_")


MAX_CATEGORIES = 1000  # declared values of one column (a model's one-hot width)


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    type: str
    level: str = ""  # empty: inherits the dataset level
    description: str = ""
    lower: float | None = None  # declared bounds, used later for DP clamping
    upper: float | None = None
    # declared values of a string column, in order: training one-hot encodes a feature
    # with them, and takes a label's classes from them (docs/training.md)
    categories: tuple[str, ...] = ()


@dataclass(frozen=True)
class DatasetDescriptor:
    name: str
    title: str
    description: str
    department: str
    level: str
    update_frequency: str
    path: str
    format: str
    columns: tuple[ColumnSpec, ...] = field(default_factory=tuple)

    def column_level(self, column: str) -> str:
        """A column can be stricter than its dataset, never looser."""
        for c in self.columns:
            if c.name == column:
                return max(c.level or self.level, self.level)
        raise KeyError(column)


def check_identifier(value: str, what: str) -> str:
    if not value or not set(value) <= _NAME_CHARS or value[0].isdigit() or len(value) > 63:
        raise InvalidArgument(
            f"{what} {value!r} must be 1-63 characters of a-z, 0-9 and _, not starting with a digit"
        )
    if value.startswith("__"):
        raise InvalidArgument(f"{what} {value!r}: names starting with __ are reserved")
    return value


def validate(desc: DatasetDescriptor) -> DatasetDescriptor:
    """Reject a descriptor that is incomplete or inconsistent, naming the field."""
    check_identifier(desc.name, "dataset name")
    if desc.level not in LEVELS:
        raise InvalidArgument(f"level {desc.level!r} must be one of {', '.join(LEVELS)}")
    if desc.format not in FORMATS:
        raise InvalidArgument(f"format {desc.format!r} must be one of {', '.join(FORMATS)}")
    if desc.update_frequency not in FREQUENCIES:
        raise InvalidArgument(
            f"update_frequency {desc.update_frequency!r} must be one of {', '.join(FREQUENCIES)}"
        )
    if not desc.title.strip():
        raise InvalidArgument("title must not be empty")
    if not desc.columns:
        raise InvalidArgument("a dataset needs at least one column")
    seen: set[str] = set()
    for c in desc.columns:
        check_identifier(c.name, "column name")
        if c.name in seen:
            raise InvalidArgument(f"column {c.name!r} is declared twice")
        seen.add(c.name)
        try:
            column_type = parse_type(c.type)
        except InvalidArgument as exc:
            raise InvalidArgument(f"column {c.name!r}: {exc.message}") from None
        if c.level and c.level not in LEVELS:
            raise InvalidArgument(f"column {c.name!r}: level {c.level!r} is not one of L1-L4")
        for bound in (c.lower, c.upper):
            if bound is not None and not math.isfinite(bound):
                raise InvalidArgument(f"column {c.name!r}: bounds must be finite numbers")
        if c.lower is not None and c.upper is not None and c.lower > c.upper:
            raise InvalidArgument(f"column {c.name!r}: lower bound is above upper bound")
        if (c.lower is not None or c.upper is not None) and not column_type.numeric:
            raise InvalidArgument(
                f"column {c.name!r}: bounds are for number columns, and it is {c.type}"
            )
        if c.categories:
            if c.type != "string":
                raise InvalidArgument(
                    f"column {c.name!r}: categories are for string columns, and it is {c.type}"
                )
            if len(c.categories) > MAX_CATEGORIES or len(set(c.categories)) != len(c.categories):
                raise InvalidArgument(
                    f"column {c.name!r}: categories are distinct, at most {MAX_CATEGORIES}"
                )
            if any(not v or len(v) > 200 for v in c.categories):
                raise InvalidArgument(f"column {c.name!r}: a category is 1 to 200 characters")
    return desc


def _column(c: Any, index: int) -> ColumnSpec:
    """One ``[[columns]]`` table, naming the column (or its place) and field at fault."""
    if not isinstance(c, dict):
        raise InvalidArgument(f"column {index + 1} of the descriptor is not a table")
    who = f"column {c['name']!r}" if isinstance(c.get("name"), str) else f"column {index + 1}"
    for name in ("name", "type"):
        if name not in c:
            raise InvalidArgument(f"descriptor {who} is missing the field {name!r}")
    bounds: dict[str, float | None] = {}
    for name in ("lower", "upper"):
        value = c.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise InvalidArgument(f"descriptor {who}: {name} must be a number, got {value!r}")
        try:
            bounds[name] = None if value is None else float(value)
        except OverflowError:  # a whole number of hundreds of digits
            raise InvalidArgument(f"descriptor {who}: {name} is too large a number") from None
    return ColumnSpec(
        name=str(c["name"]),
        type=str(c["type"]),
        level=str(c.get("level", "")),
        description=str(c.get("description", "")),
        lower=bounds["lower"],
        upper=bounds["upper"],
        categories=tuple(str(v) for v in c.get("categories", ())),
    )


def from_dict(data: dict, *, base_dir: Path | None = None) -> DatasetDescriptor:
    """Build from parsed TOML; a relative ``path`` is resolved against ``base_dir``."""
    # named before anything is made of them: `path = 5` was "format '' must be one of ...",
    # `columns = 5` "'int' object is not iterable"
    if "path" in data and (not isinstance(data["path"], str) or not data["path"]):
        raise InvalidArgument(
            f"descriptor field 'path' must be a non-empty string, got {data['path']!r}"
        )
    if not isinstance(data.get("columns", []), list):
        raise InvalidArgument(
            f"descriptor field 'columns' must be [[columns]] tables, got {data['columns']!r}"
        )
    try:
        columns = tuple(_column(c, i) for i, c in enumerate(data.get("columns", [])))
        path = str(data["path"])
        if base_dir is not None and not Path(path).is_absolute():
            path = str((base_dir / path).resolve())
        desc = DatasetDescriptor(
            name=str(data["name"]),
            title=str(data.get("title", "")),
            description=str(data.get("description", "")),
            department=str(data.get("department", "")),
            level=str(data["level"]),
            update_frequency=str(data.get("update_frequency", "static")),
            path=path,
            format=str(data.get("format", Path(path).suffix.lstrip(".").lower())),
            columns=columns,
        )
    except KeyError as exc:
        raise InvalidArgument(f"descriptor is missing the field {exc.args[0]!r}") from None
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"descriptor has a field of the wrong type: {exc}") from None
    return validate(desc)


def load(path: Path) -> DatasetDescriptor:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidArgument(f"descriptor file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise InvalidArgument(f"descriptor {path} is not valid TOML: {exc}") from None
    return from_dict(data, base_dir=path.parent)


def _toml_value(value: object) -> str:
    # JSON string and number syntax is valid TOML for the values we write.
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value, ensure_ascii=False)


def dumps(desc: DatasetDescriptor) -> str:
    """Write a descriptor as TOML (the inverse of ``load`` for a relative ``path``)."""
    lines = [
        f"{key} = {_toml_value(getattr(desc, key))}"
        for key in (
            "name",
            "title",
            "description",
            "department",
            "level",
            "update_frequency",
            "path",
            "format",
        )
    ]
    for c in desc.columns:
        lines += [
            "",
            "[[columns]]",
            f"name = {_toml_value(c.name)}",
            f"type = {_toml_value(c.type)}",
        ]
        if c.level:
            lines.append(f"level = {_toml_value(c.level)}")
        if c.description:
            lines.append(f"description = {_toml_value(c.description)}")
        if c.lower is not None:
            lines.append(f"lower = {_toml_value(c.lower)}")
        if c.upper is not None:
            lines.append(f"upper = {_toml_value(c.upper)}")
        if c.categories:
            lines.append(f"categories = {_toml_value(list(c.categories))}")
    return "\n".join(lines) + "\n"
