"""Plain-text tables for the terminal; no dependency for something this small."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.rpc.v1 import gateway_pb2
from gateway.text import shown


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    # every cell escaped: a caller's text (a purpose, a name) must not redraw the table
    cells = [[str(h) for h in headers]] + [
        ["" if v is None else shown(str(v)) for v in r] for r in rows
    ]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    numeric = [
        all(_is_number(r[i]) for r in cells[1:]) and len(cells) > 1 for i in range(len(headers))
    ]

    def line(r: list[str]) -> str:
        return "  ".join(
            (v.rjust(w) if num else v.ljust(w))
            for v, w, num in zip(r, widths, numeric, strict=True)
        ).rstrip()

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), sep, *(line(r) for r in cells[1:])])


def _is_number(value: str) -> bool:
    try:
        float(value.replace(",", ""))
    except ValueError:
        return False
    return True


def federated_catalog_table(resp: gateway_pb2.FederatedCatalogResponse) -> str:
    rows: list[list[object]] = []
    for m in resp.members:
        where = f"{m.node_id} ({m.level}{', under ' + m.parent if m.parent else ''})"
        if not m.reachable:
            rows.append([where, "UNREACHABLE", "", "", "", m.error[:60]])
            continue
        if not m.datasets:  # none, or left out of a too large answer (then an error)
            shown = "(not listed)" if m.error else "(no datasets)"
            rows.append([where, shown, "", "", "", m.error[:90]])  # (N bytes of datasets) too
        for d in m.datasets:
            schema = ", ".join(f"{c.name}:{c.type}" for c in d.columns)
            if len(schema) > 60:
                schema = schema[:57] + "..."
            rows.append([where, d.name, d.level, f"{d.rows:,}", d.updated_at, schema])
    return table(["node", "dataset", "level", "rows", "last update", "schema"], rows)
