"""Copying validated trees into new queries."""

from __future__ import annotations

from sqlglot import exp


def rebuilt(node: exp.Expr) -> exp.Expr:
    """A new tree equal to the validated ``node``, to be part of another query (a plan's
    tree is shared and read-only, and a node has one parent). Not ``node.copy()``: that
    also deep-copies each node's parse metadata (token positions), which costs about as
    much as all the rest of the owner's query."""
    args: dict[str, object] = {}
    for key, value in node.args.items():
        if isinstance(value, exp.Expr):
            args[key] = rebuilt(value)
        elif type(value) is list:
            args[key] = [rebuilt(v) if isinstance(v, exp.Expr) else v for v in value]
        else:
            args[key] = value
    return type(node)(**args)
