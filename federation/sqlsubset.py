"""The SQL subset: now the package ``federation.sql``.

transitional: removed once gateway/owner.py, gateway/home.py, gateway/grants.py import
federation.sql
"""

from __future__ import annotations

from federation.sql import (
    AGGREGATES,
    MAX_DEPTH,
    MAX_LIMIT,
    MAX_NODES,
    MAX_SQL_CHARS,
    MERGED_TABLE,
    RAW_ROW_CAP,
    AggCall,
    Projection,
    QueryError,
    QueryPlan,
    agg_column,
    parse,
)

__all__ = [
    "AGGREGATES",
    "MAX_DEPTH",
    "MAX_LIMIT",
    "MAX_NODES",
    "MAX_SQL_CHARS",
    "MERGED_TABLE",
    "RAW_ROW_CAP",
    "AggCall",
    "Projection",
    "QueryError",
    "QueryPlan",
    "agg_column",
    "parse",
]
