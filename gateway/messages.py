"""Conversions between our dataclasses and the v1 wire messages, in one place."""

from __future__ import annotations

from gateway.catalog import CatalogEntry
from gateway.descriptor import ColumnSpec, DatasetDescriptor
from gateway.grants import Grant
from gateway.rpc.v1 import common_pb2, gateway_pb2


def column_to_proto(c: ColumnSpec, dataset_level: str) -> common_pb2.Column:
    msg = common_pb2.Column(
        name=c.name,
        type=c.type,
        level=max(c.level or dataset_level, dataset_level),
        description=c.description,
    )
    if c.lower is not None:
        msg.lower = c.lower
    if c.upper is not None:
        msg.upper = c.upper
    return msg


def entry_to_proto(
    entry: CatalogEntry, node_id: str, *, show_extremes: bool = False
) -> common_pb2.DatasetInfo:
    """A catalog entry. Min/max can single out one record (the largest employer, the
    highest wage), so they are shown only for L1 columns, or to the node's own operators."""
    d, q = entry.descriptor, entry.quality
    quality = common_pb2.QualityReport(rows=q.rows, file_bytes=q.file_bytes, sha256=q.sha256)
    for c in q.columns:
        cq = quality.columns.add(name=c.name, null_rate=c.null_rate)
        if not (show_extremes or d.column_level(c.name) == "L1"):
            continue
        if c.min is not None:
            cq.min = c.min
        if c.max is not None:
            cq.max = c.max
    return common_pb2.DatasetInfo(
        node_id=node_id,
        name=d.name,
        title=d.title,
        description=d.description,
        department=d.department,
        level=d.level,
        update_frequency=d.update_frequency,
        columns=[column_to_proto(c, d.level) for c in d.columns],
        rows=q.rows,
        registered_at=entry.registered_at,
        updated_at=entry.updated_at,
        quality=quality,
        format=d.format,
    )


def descriptor_to_proto(d: DatasetDescriptor) -> gateway_pb2.DatasetDeclaration:
    msg = gateway_pb2.DatasetDeclaration(
        name=d.name,
        title=d.title,
        description=d.description,
        department=d.department,
        level=d.level,
        update_frequency=d.update_frequency,
        path=d.path,
        format=d.format,
    )
    for c in d.columns:
        col = msg.columns.add(name=c.name, type=c.type, level=c.level, description=c.description)
        if c.lower is not None:
            col.lower = c.lower
        if c.upper is not None:
            col.upper = c.upper
    return msg


def descriptor_from_proto(msg: gateway_pb2.DatasetDeclaration) -> DatasetDescriptor:
    return DatasetDescriptor(
        name=msg.name,
        title=msg.title,
        description=msg.description,
        department=msg.department,
        level=msg.level,
        update_frequency=msg.update_frequency,
        path=msg.path,
        format=msg.format,
        columns=tuple(
            ColumnSpec(
                name=c.name,
                type=c.type,
                level=c.level,
                description=c.description,
                lower=c.lower if c.HasField("lower") else None,
                upper=c.upper if c.HasField("upper") else None,
            )
            for c in msg.columns
        ),
    )


def grant_to_proto(g: Grant, status: str) -> common_pb2.Grant:
    return common_pb2.Grant(
        id=g.id,
        dataset=g.dataset,
        grantee_kind=g.grantee_kind,
        grantee=g.grantee,
        operations=list(g.operations),
        columns=[
            common_pb2.ColumnControls(column=c, controls=list(v)) for c, v in g.columns.items()
        ],
        min_group_size=g.min_group_size,
        dp_epsilon=g.dp_epsilon,
        dp_budget=g.dp_budget,
        purpose=g.purpose,
        valid_from=g.valid_from,
        expires=g.expires,
        max_uses=g.max_uses,
        uses=g.uses,
        epsilon_spent=g.epsilon_spent,
        revoked_at=g.revoked_at,
        created_by=g.created_by,
        created_at=g.created_at,
        status=status,
        grantee_org=g.grantee_org,
    )


def grant_from_proto(msg: common_pb2.Grant) -> Grant:
    return Grant(
        id="",
        dataset=msg.dataset,
        grantee_kind=msg.grantee_kind,
        grantee=msg.grantee,
        operations=tuple(msg.operations),
        columns={c.column: tuple(c.controls) for c in msg.columns},
        min_group_size=msg.min_group_size,
        dp_epsilon=msg.dp_epsilon,
        dp_budget=msg.dp_budget,
        purpose=msg.purpose,
        valid_from=msg.valid_from,
        expires=msg.expires,
        max_uses=msg.max_uses,
        grantee_org=msg.grantee_org,
    )
