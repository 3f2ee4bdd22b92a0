"""The join-aggregate form: two owners' datasets, matched on one key, aggregated.

::

    SELECT [<group columns of one side>,] <COUNT(*) | SUM(s.col) | AVG(s.col)>, ...
    FROM node.dataset [AS] a JOIN node.dataset [AS] b ON a.key = b.key
    [WHERE <conditions>] [GROUP BY <group columns>] [ORDER BY <outputs>] [LIMIT n]

No row of either side leaves its owner: the owners match their keys without revealing
them (ECDH, ``federation.psi``) and one side's values travel encrypted to the side that
groups (``JoinPlan.matcher``). So the form is narrow, and ``parse_join`` refuses anything
else with the reason, in the user's words:

- two tables at two different nodes, an INNER JOIN on one equality of one column of each;
- every column qualified by its table's alias (or name), so each belongs to one side;
- COUNT(*), SUM and AVG of plain columns, the sums all of one side (the *value side*);
- GROUP BY plain columns of one side (the *group side*), shown in SELECT; with sums, the
  group side is the other side (a side's own sums per its own groups are a single-owner
  query);
- WHERE an AND of conditions, each on one side; one side's conditions are checked as the
  single-owner subset checks them (``filter_sql``, re-parsed by that side's owner).

Like ``parse``, this never passes the user's text on: each owner's SQL is generated from
validated trees (``JoinPlan.side_sql``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlglot import exp

from federation.sql import generate, rules, wording
from federation.sql.parse import parse, read
from federation.sql.rules import Context, QueryError

_IDENTIFIER = rules._IDENTIFIER  # a column, dataset or node name (lower-cased)
_FORM = "SELECT ... FROM node.dataset a JOIN node.dataset b ON a.key = b.key"
_FUNCS: dict[type[exp.Expr], str] = {exp.Count: "count", exp.Sum: "sum", exp.Avg: "avg"}
# The clauses the single-owner subset refuses, but JOIN (which this form reads itself).
_CLAUSES = tuple((key, what) for key, what in rules._CLAUSES if key != "joins")
_TABLE_EXTRAS = ("pivots", "sample", "version", "when", "only", "partition", "changes", "format")


@dataclass(frozen=True)
class JoinSide:
    """One side of the join: what its owner reads, and in which roles."""

    node: str
    dataset: str
    alias: str  # the name its columns are qualified by (the alias, or the dataset's name)
    key: str  # the join column
    filter_sql: str  # SELECT COUNT(*) FROM dataset WHERE ... ("" without a condition)
    filter_columns: tuple[str, ...]  # columns of its conditions (sorted)
    group_columns: tuple[str, ...]  # () unless this is the group side; in SELECT order
    value_columns: tuple[str, ...]  # distinct SUM/AVG columns, in SELECT order


@dataclass(frozen=True)
class JoinAgg:
    func: str  # "count" | "sum" | "avg"
    side: int | None  # 0 / 1 (None for COUNT(*))
    column: str | None
    name: str  # output column name


@dataclass(frozen=True)
class JoinPlan:
    """A validated join aggregate. Read-only; equal texts give equal plans."""

    sql: str  # the normalised text (parse_join(plan.sql) == plan)
    sides: tuple[JoinSide, JoinSide]  # FROM order: 0 = the FROM table, 1 = the JOIN table
    aggregates: tuple[JoinAgg, ...]  # in SELECT order
    group_side: int | None
    group_outputs: tuple[str, ...]  # output names of the group columns, in SELECT order
    value_side: int | None
    order_by: tuple[tuple[str, bool], ...]  # (output name, descending)
    limit: int | None
    outputs: tuple[str, ...] = ()  # every output name, in SELECT order

    @property
    def matcher(self) -> int:
        """The side that matches and groups: it holds the group columns, and receives the
        other side's values (encrypted)."""
        if self.group_side is not None:
            return self.group_side
        if self.value_side is not None:
            return 1 - self.value_side
        return 0

    def side_sql(self, i: int, table: str, types: generate.Types | None = None) -> str:
        """The SQL the owner of side ``i`` runs over its engine's ``table`` to read the rows
        it matches: the key, its group columns, its value columns (each once, by name),
        for the rows passing its conditions and holding a key (a NULL key matches nothing
        in an inner join). Generated from the validated condition's tree, as
        ``generate.partial_tree`` generates an owner's query (the same quoting, the same
        TRY around conditions that can fail; ``types``: the columns' families by
        lower-cased name, ``generate.Types``)."""
        side = self.sides[i]
        names = dict.fromkeys((side.key, *side.group_columns, *side.value_columns))
        items: list[exp.Expr] = [exp.column(n, quoted=True) for n in names]
        if side.filter_sql:
            tree = generate.partial_tree(parse(side.filter_sql), table, types=types)
        else:
            tree = exp.Select(from_=exp.From(this=exp.table_(table, quoted=True)))
        tree.set("expressions", items)
        present = exp.Not(
            this=exp.Is(this=exp.column(side.key, quoted=True), expression=exp.Null())
        )
        where = tree.args.get("where")
        condition = present if where is None else exp.and_(present, where.this, copy=False)
        tree.set("where", exp.Where(this=condition))
        return generate.sql(tree)

    def spec(self) -> dict[str, Any]:
        """A JSON-able, canonical description (lists, strings, numbers, None): what the
        signed envelope carries and the audit records."""
        return {
            "form": "join_aggregate",
            "sql": self.sql,
            "sides": [
                {
                    "node": s.node,
                    "dataset": s.dataset,
                    "alias": s.alias,
                    "key": s.key,
                    "filter_sql": s.filter_sql,
                    "filter_columns": list(s.filter_columns),
                    "group_columns": list(s.group_columns),
                    "value_columns": list(s.value_columns),
                }
                for s in self.sides
            ],
            "aggregates": [
                {"func": a.func, "side": a.side, "column": a.column, "name": a.name}
                for a in self.aggregates
            ],
            "group_side": self.group_side,
            "group_outputs": list(self.group_outputs),
            "value_side": self.value_side,
            "order_by": [[name, desc] for name, desc in self.order_by],
            "limit": self.limit,
            "outputs": list(self.outputs),
            "matcher": self.matcher,
        }


def is_join(sql: str) -> bool:
    """Whether ``sql`` reads as one SELECT with a JOIN: such a query goes to
    ``parse_join`` (which refuses it or plans it), any other to ``parse``."""
    if "join" not in sql.lower():  # the cheap test first: most queries have no join
        return False
    try:
        select = read(sql)
    except QueryError:
        return False
    return bool(select.args.get("joins"))


# --- reading the tree ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Table:
    node: str
    dataset: str
    ref: str  # what its columns are qualified by

    @property
    def full(self) -> str:
        return f"{self.node}.{self.dataset}"


@dataclass(frozen=True)
class _Item:
    """One SELECT item: a group column or an aggregate, with its output name."""

    name: str
    column: tuple[int, str] | None  # a group column: (side, column)
    agg: JoinAgg | None
    tree: exp.Expr  # the item without its alias


class _Reader:
    """One join query under validation: the tree, the user's text, the two tables."""

    def __init__(self, select: exp.Select, sql: str) -> None:
        self.select = select
        self.sql = sql
        self.tables: tuple[_Table, _Table] | None = None

    def said(self, node: exp.Expr) -> str:
        """``node`` as the user wrote it."""
        return wording.text_of(node, self.sql)

    def both(self) -> tuple[_Table, _Table]:
        assert self.tables is not None
        return self.tables

    def column(self, col: exp.Column) -> tuple[int, str]:
        """The side and (lower-cased) name of a qualified column, or a refusal."""
        if isinstance(col.this, exp.Star):
            raise QueryError(f"{col.sql()} is not allowed; name the columns or aggregates")
        left, right = self.both()
        if col.args.get("catalog") or col.args.get("db"):
            raise QueryError(
                f"column {col.sql()}: qualify a column by its table's alias only"
                f" ({left.ref}.{col.name} or {right.ref}.{col.name})"
            )
        if not col.table:
            raise QueryError(
                f"column {col.sql()} must be qualified by its table"
                f" ({left.ref}.{col.name} or {right.ref}.{col.name}): a join reads two tables"
            )
        table = col.table.lower()
        refs = [t.ref for t in (left, right)]
        if table not in refs:
            raise QueryError(
                f"column {col.sql()}: {col.table} is not a table of this query"
                f" ({' or '.join(refs)})"
            )
        name = col.name.lower()
        if not _IDENTIFIER.fullmatch(name):
            raise QueryError(f"{col.name!r} is not a column name")
        if name.startswith("__"):
            raise QueryError(f"{col.name!r}: names starting with __ are reserved")
        return refs.index(table), name

    def column_text(self, side: int, name: str) -> str:
        return f"{self.both()[side].ref}.{name}"


def _survey_rules(select: exp.Select, sql: str) -> None:
    """The single-owner subset's first rules (size, clauses, windows, subqueries,
    parameters, engine functions), but JOIN; and no HAVING."""
    ctx = Context(select, rules.survey(select), sql=sql)
    rules.within_depth(ctx)
    rules.within_size(ctx)
    for key, what in _CLAUSES:
        if select.args.get(key):
            raise QueryError(f"{wording.clause(key, sql) or what} is not allowed")
    rules.no_window_functions(ctx)
    rules.no_subqueries(ctx)
    rules.no_parameters(ctx)
    rules.numbers_are_numbers(ctx)
    rules.only_aggregate_functions(ctx)
    if select.args.get("having") is not None:
        raise QueryError("HAVING is not allowed in a join aggregate; filter the rows in WHERE")


def _table(r: _Reader, table: exp.Expr, clause: str) -> _Table:
    """``node.dataset [AS alias]``, or a refusal."""
    if not isinstance(table, exp.Table) or not isinstance(table.this, exp.Identifier):
        raise QueryError(f"{clause} takes node.dataset, not {wording.describe(table, r.sql)}")
    if table.args.get("catalog"):
        raise QueryError(f"{clause} {table.sql()}: name node.dataset, no more")
    if not table.db:
        raise QueryError(
            f"{clause} {table.sql()}: name the node that holds it (node.{table.name});"
            " a join reads one dataset at each of two nodes"
        )
    for part in (table.name, table.db):
        if not _IDENTIFIER.fullmatch(part.lower()):
            raise QueryError(f"{part!r} is not a dataset or node name")
    for key in _TABLE_EXTRAS:
        if table.args.get(key):
            words = wording.clause(key, r.sql) if key in wording.CLAUSES else None
            raise QueryError(f"{words or clause + ' ' + key.upper()} is not allowed")
    alias = table.args.get("alias")
    ref = table.name.lower()
    if alias is not None:
        if alias.args.get("columns"):
            raise QueryError(f"{alias.sql()}: a table alias names the table, not its columns")
        ref = alias.name.lower()
        if not _IDENTIFIER.fullmatch(ref) or ref.startswith("__"):
            raise QueryError(f"{alias.name!r} is not a table alias")
    return _Table(node=table.db.lower(), dataset=table.name.lower(), ref=ref)


def _from_and_join(r: _Reader) -> tuple[str, str]:
    """Two tables at two nodes, one INNER JOIN ON a.key = b.key: the two keys."""
    select = r.select
    source = select.args.get("from_")
    if source is None:
        raise QueryError(f"a join aggregate reads two tables: {_FORM}")
    joins = select.args.get("joins") or []
    if len(joins) != 1:
        raise QueryError(f"a join aggregate joins exactly two tables, not {len(joins) + 1}")
    join = joins[0]
    kind = (join.args.get("kind") or "").upper()
    inner = not join.args.get("side") and not join.args.get("method") and kind in ("", "INNER")
    if not inner or (join.args.get("on") is None and not join.args.get("using")):
        words = wording.clause("joins", r.sql)  # read only to refuse: it tokenizes the text
        if words is not None and not words.endswith("JOIN"):  # FROM a, b
            raise QueryError(f"{words} is not allowed; write {_FORM}")
        if not inner:
            raise QueryError(
                f"{words or 'this join'} is not allowed; a join aggregate is an INNER JOIN"
            )
    left = _table(r, source.this, "FROM")
    right = _table(r, join.this, "JOIN")
    if left.node == right.node:
        raise QueryError(
            f"{left.full} and {right.full} are both at node {left.node}: a join aggregate"
            " joins datasets of two different nodes"
        )
    if left.ref == right.ref:
        raise QueryError(
            f"both tables are named {left.ref}; give them aliases"
            f" ({left.full} AS a JOIN {right.full} AS b)"
        )
    r.tables = (left, right)
    if join.args.get("using"):
        raise QueryError(
            f"JOIN ... USING is not allowed; write ON {left.ref}.key = {right.ref}.key"
        )
    on = join.args.get("on")
    while isinstance(on, exp.Paren):
        on = on.this
    if on is None:
        raise QueryError(f"the join needs ON {left.ref}.key = {right.ref}.key")
    if not (
        isinstance(on, exp.EQ)
        and isinstance(on.this, exp.Column)
        and isinstance(on.expression, exp.Column)
    ):
        raise QueryError(
            f"ON {r.said(on)}: a join aggregate joins on one equality of a column of each"
            f" table ({left.ref}.key = {right.ref}.key)"
        )
    first, second = r.column(on.this), r.column(on.expression)
    if first[0] == second[0]:
        raise QueryError(
            f"ON {r.said(on)} compares two columns of {r.both()[first[0]].ref}; join on a"
            f" column of each table ({left.ref}.key = {right.ref}.key)"
        )
    keys = {first[0]: first[1], second[0]: second[1]}
    return keys[0], keys[1]


def _output_name(alias: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", alias) or alias.startswith("__"):
        raise QueryError(f"{alias!r} is not allowed as an output name; use letters, digits and _")
    return alias


def _aggregate(r: _Reader, node: exp.Expr, keys: tuple[str, str]) -> JoinAgg:
    """COUNT(*), SUM(side.col), AVG(side.col) (COUNT(key) is COUNT(*)): unnamed yet."""
    if isinstance(node, exp.Filter):
        raise QueryError(f"{r.said(node)}: FILTER is not allowed in a join aggregate; use WHERE")
    func = _FUNCS.get(type(node))
    if func is None:
        name = (wording.written(node, r.sql) or type(node).__name__).upper()
        raise QueryError(f"{name} is not allowed in a join aggregate: only COUNT(*), SUM, AVG")
    arg = node.this
    if isinstance(arg, exp.Distinct) or node.args.get("distinct"):
        raise QueryError(f"{r.said(node)}: DISTINCT is not allowed in a join aggregate")
    if len(list(node.iter_expressions())) != 1:
        raise QueryError(f"{r.said(node)} takes exactly one argument")
    if func == "count" and isinstance(arg, exp.Star):
        return JoinAgg("count", None, None, "")
    if not isinstance(arg, exp.Column) or isinstance(arg.this, exp.Star):
        hint = "COUNT(*)" if func == "count" else f"{func.upper()}(a.column)"
        raise QueryError(f"{r.said(node)}: a join aggregate takes {hint}, of a plain column")
    side, column = r.column(arg)
    if func == "count":
        if column != keys[side]:
            raise QueryError(
                f"{r.said(node)}: a join aggregate counts matched rows, COUNT(*)"
                f" (COUNT of a column only of the join key, {r.column_text(side, keys[side])})"
            )
        return JoinAgg("count", None, None, "")
    return JoinAgg(func, side, column, "")


def _select_list(r: _Reader, keys: tuple[str, str]) -> list[_Item]:
    items: list[_Item] = []
    columns: set[tuple[int, str]] = set()
    for item in r.select.expressions:
        alias = item.alias if isinstance(item, exp.Alias) else ""
        node = item.this if isinstance(item, exp.Alias) else item
        if isinstance(node, exp.Star):
            raise QueryError("SELECT * is not allowed; name the columns or aggregates")
        if isinstance(node, exp.Column):
            side, name = r.column(node)
            if (side, name) in columns:
                raise QueryError(f"column {r.said(node)} is selected twice")
            columns.add((side, name))
            items.append(_Item(_output_name(alias or name), (side, name), None, node))
        elif type(node) in rules.AGGREGATES or isinstance(node, exp.Filter):
            agg = _aggregate(r, node, keys)
            default = agg.func if agg.column is None else f"{agg.func}_{agg.column}"
            name = _output_name(alias or default)
            agg = JoinAgg(agg.func, agg.side, agg.column, name)
            items.append(_Item(name, None, agg, node))
        else:
            raise QueryError(
                f"{r.said(node)} is not allowed in a join aggregate's SELECT list: only group"
                " columns and COUNT(*), SUM(a.column), AVG(a.column)"
            )
    seen: set[str] = set()
    for it in items:
        if it.name.lower() in seen:
            raise QueryError(f"two outputs are named {it.name}; give them different aliases")
        seen.add(it.name.lower())
    if not any(it.agg is not None for it in items):
        raise QueryError("a join aggregate computes at least one of COUNT(*), SUM, AVG")
    return items


def _value_side(r: _Reader, items: list[_Item]) -> int | None:
    sums = [it for it in items if it.agg is not None and it.agg.side is not None]
    sides = {it.agg.side for it in sums if it.agg is not None}
    if len(sides) > 1:
        texts = " and ".join(r.said(it.tree) for it in sums)
        raise QueryError(
            f"{texts} read values of both tables; a join aggregate sums the values of one side"
        )
    return sides.pop() if sides else None


def _group_by(r: _Reader, items: list[_Item]) -> list[tuple[int, str]]:
    """The GROUP BY columns: qualified columns, SELECT positions or output names."""
    group = r.select.args.get("group")
    if group is None:
        return []
    for key in ("rollup", "cube", "grouping_sets", "totals"):
        if group.args.get(key):
            raise QueryError(f"GROUP BY {key.upper()} is not allowed")
    found: list[tuple[int, str]] = []
    for g in group.expressions:
        target: tuple[int, str] | None = None
        item: _Item | None = None
        if isinstance(g, exp.Literal) and not g.is_string:
            if not g.this.isdigit() or not 1 <= int(g.this) <= len(items):
                raise QueryError(f"GROUP BY {g.this}: there are {len(items)} items in SELECT")
            item = items[int(g.this) - 1]
        elif isinstance(g, exp.Column) and not g.table:
            item = next((i for i in items if i.name.lower() == g.name.lower()), None)
            if item is None:
                r.column(g)  # refused: not qualified
        elif isinstance(g, exp.Column):
            target = r.column(g)
        else:
            raise QueryError(
                f"GROUP BY {r.said(g)} is not allowed in a join aggregate: group by columns"
            )
        if item is not None:
            if item.column is None:
                raise QueryError(f"GROUP BY {r.said(g)}: cannot group by an aggregate")
            target = item.column
        assert target is not None
        if target not in found:
            found.append(target)
    sides = {side for side, _ in found}
    if len(sides) > 1:
        texts = ", ".join(r.column_text(s, c) for s, c in found)
        raise QueryError(
            f"GROUP BY {texts} groups by columns of both tables; group by one table's columns"
        )
    return found


def _group_side(
    r: _Reader, items: list[_Item], groups: list[tuple[int, str]], keys: tuple[str, str]
) -> int | None:
    shown = [it.column for it in items if it.column is not None]
    for column in shown:
        if column not in groups:
            raise QueryError(
                f"column {r.column_text(*column)} must be in GROUP BY or inside an aggregate"
                " function"
            )
    for column in groups:
        if column not in shown:
            raise QueryError(
                f"GROUP BY {r.column_text(*column)}: a join aggregate shows its group columns;"
                " add it to the SELECT list"
            )
        if column[1] == keys[column[0]]:
            raise QueryError(
                f"GROUP BY {r.column_text(*column)} groups by the join key: it would list the"
                " matched keys (count them with COUNT(*), or use PSI)"
            )
    return groups[0][0] if groups else None


def _conjuncts(node: exp.Expr) -> list[exp.Expr]:
    """The parts of an AND (through parentheses), in the order written."""
    inner = node
    while isinstance(inner, exp.Paren):
        inner = inner.this
    if isinstance(inner, exp.And):
        return _conjuncts(inner.this) + _conjuncts(inner.expression)
    return [node]


def _where(r: _Reader) -> tuple[list[exp.Expr], list[exp.Expr]]:
    """Each side's conditions, in the order written."""
    where = r.select.args.get("where")
    parts: tuple[list[exp.Expr], list[exp.Expr]] = ([], [])
    if where is None:
        return parts
    left, right = r.both()
    for conjunct in _conjuncts(where.this):
        sides = {r.column(c)[0] for c in conjunct.find_all(exp.Column)}
        if not sides:
            raise QueryError(
                f"WHERE {r.said(conjunct)} names no column; each condition of a join"
                " aggregate is on the columns of one table"
            )
        if len(sides) > 1:
            raise QueryError(
                f"WHERE {r.said(conjunct)} uses columns of both tables ({left.ref} and"
                f" {right.ref}); each condition may use one table's columns only"
            )
        parts[sides.pop()].append(conjunct)
    return parts


def _count_where(dataset: str, conditions: list[exp.Expr]) -> str:
    """``SELECT COUNT(*) FROM dataset WHERE <conditions, unqualified>``, generated."""
    unqualified = []
    for condition in conditions:
        copy = condition.copy()
        for col in copy.find_all(exp.Column):
            col.set("table", None)
        unqualified.append(copy)
    select = exp.Select(
        expressions=[exp.Count(this=exp.Star())],
        from_=exp.From(this=exp.table_(dataset)),
        where=exp.Where(this=exp.and_(*unqualified, copy=False)),
    )
    return generate.sql(select)


def _filter_sql(r: _Reader, side: int, conditions: list[exp.Expr]) -> tuple[str, tuple[str, ...]]:
    """The side's conditions as the single-owner query its owner re-parses, checked here by
    the same parser (every rule of the subset applies); and the columns they use."""
    if not conditions:
        return "", ()
    table = r.both()[side]
    text = _count_where(table.dataset, conditions)
    try:
        plan = parse(text)
    except QueryError as exc:
        for condition in conditions:  # the condition refused, to quote it as written
            try:
                parse(_count_where(table.dataset, [condition]))
            except QueryError as alone:
                raise QueryError(f"WHERE {r.said(condition)}: {alone}") from None
        raise QueryError(f"WHERE on {table.ref} ({table.full}): {exc}") from None
    return text, tuple(sorted(plan.scan.column_roles))


def _order_by(r: _Reader, items: list[_Item]) -> tuple[tuple[str, bool], ...]:
    """Output names, SELECT positions, or a SELECT item repeated."""
    order = r.select.args.get("order")
    if order is None:
        return ()
    names = ", ".join(it.name for it in items)
    found: list[tuple[str, bool]] = []
    for o in order.expressions:
        target = o.this
        if o.args.get("nulls_first"):
            raise QueryError(f"ORDER BY {r.said(o)}: NULLS FIRST is not allowed here")
        item: _Item | None = None
        if isinstance(target, exp.Literal) and not target.is_string:
            if not target.this.isdigit() or not 1 <= int(target.this) <= len(items):
                raise QueryError(f"ORDER BY {target.this}: there are {len(items)} items in SELECT")
            item = items[int(target.this) - 1]
        elif isinstance(target, exp.Column) and not target.table:
            item = next((i for i in items if i.name.lower() == target.name.lower()), None)
        else:
            item = next((i for i in items if i.tree == target), None)
        if item is None:
            raise QueryError(
                f"ORDER BY {r.said(target)}: order by an output name or position ({names})"
            )
        found.append((item.name, bool(o.args.get("desc"))))
    return tuple(found)


def parse_join(sql: str) -> JoinPlan:
    """Parse and validate one join aggregate; raise QueryError with the reason if refused."""
    select = read(sql)
    _survey_rules(select, sql)
    r = _Reader(select, sql)
    keys = _from_and_join(r)
    items = _select_list(r, keys)
    value_side = _value_side(r, items)
    groups = _group_by(r, items)
    group_side = _group_side(r, items, groups, keys)
    if value_side is not None and group_side == value_side:
        sums = next(it for it in items if it.agg is not None and it.agg.side is not None)
        texts = ", ".join(r.column_text(s, c) for s, c in groups)
        raise QueryError(
            "a join aggregate sums the values of one side grouped by the other side's"
            f" columns: {r.said(sums.tree)} and GROUP BY {texts} are both of"
            f" {r.both()[value_side].full}"
        )
    conditions = _where(r)
    order_by = _order_by(r, items)
    limit = rules.limit_of(select)
    shown = [it.column for it in items if it.column is not None]  # == groups, as a set
    sides = []
    for i, table in enumerate(r.both()):
        filter_sql, filter_columns = _filter_sql(r, i, conditions[i])
        aggs = [it.agg for it in items if it.agg is not None and it.agg.side == i]
        sides.append(
            JoinSide(
                node=table.node,
                dataset=table.dataset,
                alias=table.ref,
                key=keys[i],
                filter_sql=filter_sql,
                filter_columns=filter_columns,
                group_columns=tuple(c for s, c in shown if s == i),
                value_columns=tuple(dict.fromkeys(a.column for a in aggs if a.column)),
            )
        )
    return JoinPlan(
        sql=generate.sql(select),
        sides=(sides[0], sides[1]),
        aggregates=tuple(it.agg for it in items if it.agg is not None),
        group_side=group_side,
        group_outputs=tuple(it.name for it in items if it.column is not None),
        value_side=value_side,
        order_by=order_by,
        limit=limit,
        outputs=tuple(it.name for it in items),
    )
