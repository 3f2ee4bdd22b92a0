"""What a node's own operators do to it: register datasets, write and revoke grants,
approve and revoke custom training apps.

Every change is audited (the catalog and the grant store write their entries in the
change's own transaction) and logged.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

from federation.membership import Membership
from federation.training.app_bundle import AppBundle
from gateway.audit import AuditLog
from gateway.catalog import Catalog, CatalogEntry
from gateway.clock import parse_time, utc
from gateway.descriptor import DatasetDescriptor
from gateway.errors import NotFound
from gateway.identity import Identity
from gateway.metrics import NodeMetrics
from gateway.policy import validate
from gateway.policy.model import Grant
from gateway.policy.store import GrantStore
from gateway.training.apps import ApprovedApp, AppStore

log = logging.getLogger("fedgate.node")


class Operator:
    def __init__(
        self,
        node_id: str,
        catalog: Catalog,
        grants: GrantStore,
        audit: AuditLog,
        metrics: NodeMetrics,
        apps: AppStore,
        membership: Callable[[], Membership],
    ) -> None:
        self.node_id = node_id
        self._membership = membership
        self._apps = apps
        self._catalog = catalog
        self._grants = grants
        self._audit = audit
        self._metrics = metrics

    def register_dataset(
        self, desc: DatasetDescriptor, caller: Identity
    ) -> tuple[CatalogEntry, bool]:
        # the catalog writes the dataset.registered entry in the registration's transaction
        entry, replaced = self._catalog.register(desc, by=caller, when=utc())
        self._metrics.datasets.set(len(self._catalog.entries()))
        log.info(
            "dataset registered name=%s level=%s rows=%d by=%s replaced=%s",
            desc.name,
            desc.level,
            entry.quality.rows,
            caller,
            replaced,
        )
        return entry, replaced

    def add_grant(self, grant: Grant, caller: Identity) -> Grant:
        entry = self._catalog.get(grant.dataset)
        if entry is None:
            raise NotFound(f"no dataset {grant.dataset!r} at {self.node_id}")
        # a node grantee is a member, as query, psi and train ask (review, 2026-12-05: a
        # typo's grant, 'nanjing', was written and matched no node); one that leaves the
        # federation later keeps its grant, which then matches no call
        if grant.grantee_kind == "node" and self._membership().get(grant.grantee) is None:
            raise NotFound(f"no member {grant.grantee[:100]!r} in the federation")
        now = utc()
        grant = dataclasses.replace(
            grant,
            valid_from=parse_time(grant.valid_from, "valid_from") or now,
            expires=parse_time(grant.expires, "expires"),
            created_by=str(caller),
            created_at=now,
        )
        grant = self._grants.add(validate(grant, entry.descriptor), actor=str(caller))
        log.info(
            "grant written id=%s dataset=%s grantee=%s:%s operations=%s by=%s",
            grant.id,
            grant.dataset,
            grant.grantee_kind,
            grant.grantee,
            ",".join(grant.operations),
            caller,
        )
        return grant

    def approve_app(self, bundle: AppBundle, name: str, caller: Identity) -> ApprovedApp:
        def record(app: ApprovedApp) -> None:  # durable before the app counts as approved
            self._audit.append(
                {
                    "kind": "app.approved",
                    "time": utc(),
                    "actor": str(caller),
                    "digest": app.digest,
                    "name": app.name,
                    "files": app.files,
                    "size": app.size,
                }
            )

        app = self._apps.approve(bundle, name, str(caller), utc(), record)
        log.info("app approved digest=%s name=%s by=%s", app.digest, app.name, caller)
        return app

    def list_apps(self) -> list[ApprovedApp]:
        return self._apps.list()

    def revoke_app(self, digest: str, caller: Identity) -> ApprovedApp:
        def record(app: ApprovedApp) -> None:
            self._audit.append(
                {"kind": "app.revoked", "time": utc(), "actor": str(caller), "digest": app.digest}
            )

        app = self._apps.revoke(digest, record)
        log.info("app revoked digest=%s by=%s", app.digest, caller)
        return app

    def revoke_grant(self, grant_id: str, caller: Identity) -> Grant:
        grant = self._grants.revoke(grant_id, utc(), actor=str(caller))
        log.info("grant revoked id=%s by=%s", grant.id, caller)
        return grant
