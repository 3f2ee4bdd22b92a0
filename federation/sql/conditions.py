"""A WHERE condition taken apart into its leaves: the single tests it combines.

The owner's L2 noise gives each leaf its own noise layer, seeded by the rows the leaf
alone matches in the whole dataset (``gateway.sticky_noise``). A leaf is what ``AND``,
``OR`` and ``NOT`` combine; ``BETWEEN`` counts as its two bounds and ``IN`` as one
equality per value, so that a range or a list cannot be rewritten into a new leaf that
matches different rows while the query's answer stays the same.
"""

from __future__ import annotations

from sqlglot import exp

MAX_LEAVES = 64


class TooManyLeaves(ValueError):
    """The condition combines more single tests than the owner will seed noise for."""


def _spelled(node: exp.Expr) -> exp.Expr | None:
    """``BETWEEN`` as its two bounds (``>=`` low AND ``<=`` high) and ``IN`` as one
    equality per value OR'd; None for anything else."""
    if isinstance(node, exp.Between):
        value = node.this
        return exp.And(
            this=exp.GTE(this=value.copy(), expression=node.args["low"].copy()),
            expression=exp.LTE(this=value.copy(), expression=node.args["high"].copy()),
        )
    if isinstance(node, exp.In) and node.expressions:
        tests = [exp.EQ(this=node.this.copy(), expression=v.copy()) for v in node.expressions]
        out: exp.Expr = tests[0]
        for t in tests[1:]:
            out = exp.Or(this=out, expression=t)
        return out
    return None


def leaves(*conditions: exp.Expr | None) -> list[exp.Expr]:
    """The conditions' leaves (new trees, each once by its text), in order of appearance."""
    found: dict[str, exp.Expr] = {}
    stack = [c for c in reversed(conditions) if c is not None]
    while stack:
        node = stack.pop()
        if isinstance(node, exp.And | exp.Or):
            stack += [node.expression, node.this]
        elif isinstance(node, exp.Not | exp.Paren):
            stack.append(node.this)
        elif (tests := _spelled(node)) is not None:
            stack.append(tests)
        else:
            found.setdefault(node.sql(), node)
        if len(found) > MAX_LEAVES:
            raise TooManyLeaves(
                f"the condition combines more than {MAX_LEAVES} single tests (an IN list "
                "counts one per value)"
            )
    return list(found.values())


def canonical(condition: exp.Expr, names: dict[str, str]) -> str:
    """The condition's logic as a string: each leaf by ``names`` (the fingerprint of the
    rows it matches, so ``x > 4`` and ``x >= 5`` on whole numbers are one variable), AND
    and OR flattened with their operands sorted and each once, NOT kept, ``BETWEEN`` and
    ``IN`` as the leaves ``leaves`` makes of them. Spellings of one condition give one
    string; two conditions with one string select the same rows on any data, so equal
    rows reached by different logic (``X OR (v AND t)``, ``X AND NOT (v AND t)``) never
    share it, whatever twins of a test the attacker writes."""

    def walk(node: exp.Expr) -> str:
        if isinstance(node, exp.Paren):
            return walk(node.this)
        if isinstance(node, exp.And | exp.Or):
            kind = type(node)
            parts: set[str] = set()
            stack = [node]
            while stack:
                n = stack.pop()
                while isinstance(n, exp.Paren):
                    n = n.this
                if isinstance(n, kind):
                    stack += [n.this, n.expression]
                else:
                    parts.add(walk(n))
            name = "and" if kind is exp.And else "or"
            return f"{name}({','.join(sorted(parts))})" if len(parts) > 1 else parts.pop()
        if isinstance(node, exp.Not):
            return f"not({walk(node.this)})"
        if (tests := _spelled(node)) is not None:
            return walk(tests)
        text = node.sql()
        rows = names.get(text, text)
        # A test of one bare column against constants is named by its rows alone (its
        # spellings, x > 4 and x >= 5, are one variable). Any other test can hide logic
        # of its own (CASE WHEN a OR (v AND t) ..., arithmetic over several columns), so
        # it is named by its text as well: else "X" and "one test holding X OR (v AND
        # t)" had one name exactly when t failed, and equal answers read t in 17
        # queries (review, 2026-12-04, night).
        return rows if _plain(node) else f"{rows}~{text}"

    return walk(condition)


_COMPARISONS = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.Is, exp.Like, exp.ILike)


def _constant(node: exp.Expr) -> bool:
    while isinstance(node, exp.Cast | exp.Neg | exp.Paren):  # DATE '...', -5
        node = node.this
    return isinstance(node, exp.Literal | exp.Null | exp.Boolean)


def _plain(node: exp.Expr) -> bool:
    """A comparison of one bare column with a constant: it cannot combine tests."""
    if not isinstance(node, _COMPARISONS):
        return False
    sides = (node.this, node.expression)
    return any(isinstance(s, exp.Column) for s in sides) and any(_constant(s) for s in sides)
