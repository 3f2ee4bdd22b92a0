"""The local engine's SQL dialect, as one sqlglot ``Dialect`` instance.

Named by a string, sqlglot looks the dialect up and builds a new instance on every parse
and every generation; planning a new query does several of each.
"""

from __future__ import annotations

from sqlglot.dialects.dialect import Dialect

DUCKDB: Dialect = Dialect.get_or_raise("duckdb")
