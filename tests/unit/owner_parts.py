"""An owner in this process with its real parts: SQLite state, catalog, grants, audit
log, DuckDB, the node's key and a CA-issued certificate. No network: the owner has no
children, so its relay never calls out. The owner's unit tests each build one."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from federation.envelope import Envelope
from federation.membership import Member, Membership
from gateway import clock, identity
from gateway.audit import AuditLog
from gateway.catalog import Catalog
from gateway.engine import Engine
from gateway.policy.model import Grant
from gateway.policy.store import GrantStore
from gateway.receipts import Signer
from gateway.release.pipeline import ReleasePipeline
from gateway.roles.owner import Owner
from gateway.roles.relay import Relay
from gateway.state import State

ORG = "Anhui bureau"
OPERATOR = identity.Identity("operator", "op@anhui", ORG, "1", clock.now())


@dataclass
class OwnerParts:
    owner: Owner
    grants: GrantStore
    audit: AuditLog
    state: State
    data: Path  # the dataset root: write a file here, then register it in ``catalog``
    bundle: list[Any]
    catalog: Catalog
    engine: Engine


def _no_call(member: Member, env: Envelope) -> object:
    raise AssertionError(f"the owner has no children, yet called {member.id}")


@contextmanager
def owner_parts(tmp: Path, max_message_bytes: int = 4 * 1024 * 1024) -> Iterator[OwnerParts]:
    ca = tmp / "ca"
    identity.init_ca(ca)
    key_pem, csr = identity.make_csr("node", "anhui", ORG, ["127.0.0.1"])
    identity.write_private(tmp / "anhui.key", key_pem)
    cert_pem = identity.sign_csr(ca, csr)
    key = identity.load_key(tmp / "anhui.key")
    data = tmp / "data"
    data.mkdir()
    state = State(tmp / "state.sqlite3")
    catalog = Catalog(state, (data,), ORG)
    grants = GrantStore(state)
    audit = AuditLog(state, "anhui", key, cert_pem)
    engine = Engine(1)
    members = Membership(
        "test", 1, "2026-01-01T00:00:00Z", (Member("anhui", ORG, "127.0.0.1:1", "province"),)
    )
    with ThreadPoolExecutor(2) as pool:
        relay = Relay("anhui", lambda: members, _no_call, pool)
        release = ReleasePipeline("anhui", grants, audit, Signer(key, cert_pem), max_message_bytes)
        owner = Owner("anhui", catalog, grants, engine, release, relay)
        bundle = identity.load_bundle(ca / identity.CA_CERT)
        try:
            yield OwnerParts(owner, grants, audit, state, data, bundle, catalog, engine)
        finally:
            engine.close()
            state.close()


def org_grant(dataset: str, org: str, columns: dict, **fields: object) -> Grant:
    """A query grant to the organisation ``org`` (``fields`` override the rest)."""
    base: dict = {
        "id": "",
        "dataset": dataset,
        "grantee_kind": "org",
        "grantee": org,
        "operations": ("query",),
        "columns": columns,
        "min_group_size": 5,
        "valid_from": "2020-01-01T00:00:00Z",
        "created_at": "2020-01-01T00:00:00Z",
    }
    return Grant(**(base | fields))
