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
