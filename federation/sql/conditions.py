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
        elif isinstance(node, exp.Between):
            value = node.this
            stack += [
                exp.LTE(this=value.copy(), expression=node.args["high"].copy()),
                exp.GTE(this=value.copy(), expression=node.args["low"].copy()),
            ]
        elif isinstance(node, exp.In) and node.expressions:
            value = node.this
            stack += [
                exp.EQ(this=value.copy(), expression=v.copy()) for v in reversed(node.expressions)
            ]
        else:
            found.setdefault(node.sql(), node)
        if len(found) > MAX_LEAVES:
            raise TooManyLeaves(
                f"the condition combines more than {MAX_LEAVES} single tests (an IN list "
                "counts one per value)"
            )
    return list(found.values())


def forced(condition: exp.Expr, leaf: str, value: bool) -> exp.Expr:
    """A new ``condition`` with every occurrence of the leaf ``leaf`` (its text, as
    ``leaves`` names it) replaced by TRUE or FALSE; ``BETWEEN`` and ``IN`` are first
    spelled as the leaves ``leaves`` makes of them. Two conditions that mean the same
    stay the same when the same leaf is forced, whatever their spelling."""

    def walk(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.And | exp.Or):
            return type(node)(this=walk(node.this), expression=walk(node.expression))
        if isinstance(node, exp.Not | exp.Paren):
            return type(node)(this=walk(node.this))
        if isinstance(node, exp.Between):
            value_ = node.this
            low = exp.GTE(this=value_.copy(), expression=node.args["low"].copy())
            high = exp.LTE(this=value_.copy(), expression=node.args["high"].copy())
            return exp.Paren(this=exp.And(this=walk(low), expression=walk(high)))
        if isinstance(node, exp.In) and node.expressions:
            tests = [exp.EQ(this=node.this.copy(), expression=v.copy()) for v in node.expressions]
            out = walk(tests[0])
            for t in tests[1:]:
                out = exp.Or(this=out, expression=walk(t))
            return exp.Paren(this=out)
        if node.sql() == leaf:
            return exp.true() if value else exp.false()
        return node.copy()

    return walk(condition)
