"""The node's own catalog: registering local files as datasets and deciding who sees what.

It owns the ``datasets`` table of the node's state.

Visibility follows classification: L4 (core) datasets are listed only to the node's own
operators; everything else is listed to any authenticated member, analyst or node.

A registration and its ``dataset.registered`` audit entry are one transaction.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from dataclasses import dataclass
from pathlib import Path

from gateway import descriptor as descriptor_mod
from gateway.audit import AuditLog
from gateway.descriptor import DatasetDescriptor
from gateway.errors import InvalidArgument
from gateway.identity import Identity
from gateway.quality import QualityReport, check_file
from gateway.state import State


@dataclass(frozen=True)
class CatalogEntry:
    descriptor: DatasetDescriptor
    quality: QualityReport
    registered_at: str
    updated_at: str


def _under(path: Path, roots: tuple[Path, ...]) -> bool:
    return any(path.is_relative_to(root) for root in roots)


def _registered(
    desc: DatasetDescriptor, quality: QualityReport, by: Identity, when: str, replaced: bool
) -> dict:
    """The audit entry of a registration (docs/audit.md)."""
    return {
        "kind": "dataset.registered",
        "time": when,
        "actor": str(by),
        "dataset": desc.name,
        "level": desc.level,
        "rows": quality.rows,
        "sha256": quality.sha256,
        "replaced": replaced,
    }


class Catalog:
    def __init__(self, state: State, roots: tuple[Path, ...], node_org: str) -> None:
        self._state = state
        self._roots = tuple(r.resolve() for r in roots)
        self._node_org = node_org
        # The table's rows as last loaded; this process is the only writer. A load that
        # began before a registration must not be kept after it (review, 2026-12-05: a
        # new dataset stayed unseen, a dataset moved to L4 stayed listed), so each
        # registration moves the generation on and a load is kept only if none came
        # since it began.
        self._lock = threading.Lock()
        self._entries: list[CatalogEntry] | None = None
        self._generation = 0

    def register(
        self, desc: DatasetDescriptor, *, by: Identity, when: str
    ) -> tuple[CatalogEntry, bool]:
        """Check the file against its declaration, measure it, and record it durably,
        with its ``dataset.registered`` audit entry in the same transaction."""
        desc = descriptor_mod.validate(desc)
        path = Path(desc.path)
        if not path.is_absolute():
            raise InvalidArgument(f"dataset path {desc.path!r} must be absolute on the node")
        try:
            path = path.resolve()
        except (OSError, RuntimeError) as exc:  # a symlink loop (review, 2026-12-05)
            raise InvalidArgument(f"dataset path {desc.path!r} cannot be resolved: {exc}") from None
        if not _under(path, self._roots):
            roots = ", ".join(str(r) for r in self._roots)
            raise InvalidArgument(
                f"dataset path {path} is outside the node's dataset roots ({roots})"
            )
        quality = check_file(desc, path)
        desc = dataclasses.replace(desc, path=str(path))
        with self._state.transaction() as db:
            old = db.execute(
                "SELECT registered_at FROM datasets WHERE name = ?", (desc.name,)
            ).fetchone()
            registered_at = old[0] if old else when
            db.execute(
                "INSERT OR REPLACE INTO datasets VALUES (?, ?, ?, ?, ?, ?)",
                (
                    desc.name,
                    json.dumps(dataclasses.asdict(desc)),
                    json.dumps(quality.to_dict()),
                    registered_at,
                    when,
                    str(by),
                ),
            )
            AuditLog.append_in(db, _registered(desc, quality, by, when, old is not None))
        with self._lock:
            self._generation += 1
            self._entries = None
        return CatalogEntry(desc, quality, registered_at, when), old is not None

    def entries(self) -> list[CatalogEntry]:
        with self._lock:
            if self._entries is not None:
                return list(self._entries)
            generation = self._generation
        loaded = self._load()
        with self._lock:
            if self._generation == generation:  # no registration since the load began
                self._entries = loaded
        return list(loaded)

    def get(self, name: str) -> CatalogEntry | None:
        return next((e for e in self.entries() if e.descriptor.name == name), None)

    def _load(self) -> list[CatalogEntry]:
        with self._state.read() as db:
            rows = db.execute(
                "SELECT descriptor, quality, registered_at, updated_at FROM datasets ORDER BY name"
            ).fetchall()
        out = []
        for descriptor, quality, registered_at, updated_at in rows:
            d = json.loads(descriptor)
            d["columns"] = tuple(
                descriptor_mod.ColumnSpec(**{**c, "categories": tuple(c.get("categories", ()))})
                for c in d["columns"]
            )
            out.append(
                CatalogEntry(
                    DatasetDescriptor(**d),
                    QualityReport.from_dict(json.loads(quality)),
                    registered_at,
                    updated_at,
                )
            )
        return out

    def own_operator(self, caller: Identity) -> bool:
        return caller.role == "operator" and caller.org == self._node_org

    def visible_to(self, caller: Identity, name_contains: str = "") -> list[CatalogEntry]:
        own_operator = self.own_operator(caller)
        return [
            e
            for e in self.entries()
            if name_contains in e.descriptor.name and (e.descriptor.level != "L4" or own_operator)
        ]
