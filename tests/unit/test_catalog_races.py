"""The catalog under concurrent registration and failure: what a registration changes is
what every later read sees, and a registration is never durable without its audit entry."""

from __future__ import annotations

import dataclasses
import threading
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from federation.membership import Membership
from gateway import clock, identity
from gateway.audit import AuditLog
from gateway.catalog import Catalog, CatalogEntry
from gateway.roles.operator import Operator
from tests.unit.owner_parts import OPERATOR, OwnerParts, owner_parts
from tests.unit.test_owner import _descriptor, _firms

WHEN = "2026-01-01T00:00:00Z"
ANALYST = identity.Identity("analyst", "li.wei@shanghai", "Shanghai", "2", clock.now())


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[OwnerParts]:
    with owner_parts(tmp_path) as made:
        _firms(made.data / "firms.parquet")
        yield made


def _held_load(catalog: Catalog, monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Start a reader whose load of the table has read the rows but not yet kept them;
    return what lets that load finish."""
    loaded, go = threading.Event(), threading.Event()
    real_load = catalog._load

    def slow_load() -> list[CatalogEntry]:
        out = real_load()
        if not loaded.is_set():
            loaded.set()
            go.wait(5)
        return out

    monkeypatch.setattr(catalog, "_load", slow_load)
    reader = threading.Thread(target=catalog.entries)
    reader.start()
    assert loaded.wait(5)

    def finish() -> None:
        go.set()
        reader.join()

    return finish


def test_a_registration_during_a_catalog_load_is_not_lost(
    parts: OwnerParts, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review (2026-12-05): ``entries()`` kept what it loaded even when a registration
    came in meanwhile, so the new dataset stayed unseen until the next registration or a
    restart."""
    finish = _held_load(parts.catalog, monkeypatch)
    parts.catalog.register(_descriptor(parts.data / "firms.parquet"), by=OPERATOR, when=WHEN)
    finish()
    assert parts.catalog.get("firms") is not None


def test_a_dataset_moved_to_l4_during_a_catalog_load_is_not_listed(
    parts: OwnerParts, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review (2026-12-05): the same race kept a dataset reclassified to L4 listed (and
    served) under its old descriptor."""
    desc = _descriptor(parts.data / "firms.parquet")
    parts.catalog.register(desc, by=OPERATOR, when=WHEN)
    finish = _held_load(parts.catalog, monkeypatch)
    parts.catalog.register(dataclasses.replace(desc, level="L4"), by=OPERATOR, when=WHEN)
    finish()
    assert parts.catalog.visible_to(ANALYST) == []
    entry = parts.catalog.get("firms")
    assert entry is not None and entry.descriptor.level == "L4"


def _operator(parts: OwnerParts) -> Operator:
    metrics = types.SimpleNamespace(datasets=types.SimpleNamespace(set=lambda n: None))
    return Operator(
        "anhui",
        parts.catalog,
        parts.grants,
        parts.audit,
        metrics,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        lambda: Membership("test", 1, "2026-01-01T00:00:00Z", ()),
    )


def test_a_registration_is_not_durable_without_its_audit_entry(
    parts: OwnerParts, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review (2026-12-05): the catalog row was committed, then ``dataset.registered``
    appended in a second transaction: a crash or a full disk in between left a served
    dataset with no audit entry. Both are one transaction now."""

    def fail(db: object, body: dict) -> None:
        raise OSError("disk full")  # or the process dies here

    monkeypatch.setattr(AuditLog, "append_in", staticmethod(fail))
    with pytest.raises(OSError, match="disk full"):
        _operator(parts).register_dataset(_descriptor(parts.data / "firms.parquet"), OPERATOR)
    monkeypatch.undo()
    assert parts.catalog.get("firms") is None
    assert parts.audit.entries() == []


def test_a_registration_and_its_audit_entry_are_written_together(parts: OwnerParts) -> None:
    op = _operator(parts)
    entry, replaced = op.register_dataset(_descriptor(parts.data / "firms.parquet"), OPERATOR)
    again, replaced_again = op.register_dataset(entry.descriptor, OPERATOR)
    assert (replaced, replaced_again) == (False, True)
    bodies = [e.data for e in parts.audit.entries()]
    assert [b["kind"] for b in bodies] == ["dataset.registered"] * 2
    assert bodies[1] == {
        "kind": "dataset.registered",
        "time": again.updated_at,
        "actor": str(OPERATOR),
        "dataset": "firms",
        "level": "L2",
        "rows": 48,
        "sha256": again.quality.sha256,
        "replaced": True,
    }
