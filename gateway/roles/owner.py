"""The owner's side of a federated query: re-check, run, protect, spend, sign, release.

An owner trusts nothing the home node decided. It re-parses the SQL, and its own
partition goes through the release pipeline (``gateway.release``) under its *own*
grants. As a relay it asks its children too and returns one merged, still-protected
partial.
"""

from __future__ import annotations

import pyarrow as pa

from federation.envelope import Envelope
from federation.gather import Gathered, keep_agreeing, not_merged
from federation.outcome import Code, Error
from federation.partials import PartialError, merge, to_ipc
from federation.reports import Explanation, OwnerReport, PartialAnswer
from federation.sql import QueryPlan
from gateway.catalog import Catalog, CatalogEntry
from gateway.engine import Engine
from gateway.errors import FedgateError, InvalidArgument, NotFound, ResourceExhausted
from gateway.limits import check_size
from gateway.planning import plan_or_refuse
from gateway.policy.store import GrantStore
from gateway.release.pipeline import ReleasePipeline
from gateway.release.query import PlanCache, QueryRelease, query_subject
from gateway.roles.relay import Relay
from gateway.sticky_noise import noise_key


class Owner:
    def __init__(
        self,
        node_id: str,
        catalog: Catalog,
        grants: GrantStore,
        engine: Engine,
        pipeline: ReleasePipeline,
        relay: Relay,
    ) -> None:
        self.node_id = node_id
        self.catalog = catalog
        self.grants = grants
        self.engine = engine
        self.pipeline = pipeline
        self.relay = relay
        self.sql_cache = PlanCache()
        self.noise_key = noise_key(pipeline.signer.key)

    def execute(self, env: Envelope) -> PartialAnswer:
        """This node's part of a query (and its children's, as a relay)."""
        if env.operation != "query":
            raise InvalidArgument(f"{env.operation!r} is not a query")
        plan = plan_or_refuse(env.body)
        found = Gathered()
        entry = self._published(plan, env)
        if entry is not None:
            found.published = True
            report, table, released = self._own(plan, entry, env)
            found.owners.append(report)
            if table is not None:
                found.tables.append(table)
                found.payloads.append(released)
                found.spans.append((self.node_id, 0, 1))
        if env.include_children:
            children = self.relay.ask_children(env, plan)
            shift = len(found.owners)
            found.owners.extend(children.owners)
            found.tables.extend(children.tables)
            found.payloads.extend(children.payloads)
            found.spans.extend((t, a + shift, b + shift) for t, a, b in children.spans)
            found.published = found.published or children.published
            # its own partial and its cities' merge only where their kinds of value agree
            keep_agreeing(plan, found, self.node_id)
        reports, tables, published = found.owners, found.tables, found.published
        payload = b""
        if tables and not env.explain:
            # Sent on unless this node is the query's home, asking itself: then the home
            # merges further and checks its own answer (a LIMIT may make it small).
            sent = env.home_node != self.node_id or bool(env.path)
            try:
                # one release goes on as its very bytes, which its receipt names
                payload = found.payloads[0] if len(tables) == 1 else to_ipc(merge(plan, tables))
                if sent:
                    limit = self.pipeline.max_payload_bytes
                    check_size(payload, limit, "the relay's partial of its own and its cities'")
            except (PartialError, ResourceExhausted) as exc:
                # The releases stand, the merged partial does not: none of them contributes
                # (review, 2026-12-05: they were still counted as contributors, and a merge
                # over the message limit failed at gRPC's send, their receipts lost).
                why = (
                    exc.error
                    if isinstance(exc, FedgateError)
                    else Error(Code.FAILED_PRECONDITION, str(exc))
                )
                failed = not_merged(reports, self.node_id, why, self.node_id)
                return PartialAnswer(self.node_id, published, b"", tuple(failed))
        return PartialAnswer(self.node_id, published, payload, tuple(reports))

    def _published(self, plan: QueryPlan, env: Envelope) -> CatalogEntry | None:
        entry = self.catalog.get(plan.dataset)
        if entry is not None and entry.descriptor.level == "L4":
            # Core data is not in anyone else's catalog; answer as if it did not exist.
            core = NotFound("L4 (core) dataset: nothing leaves the node")
            self.pipeline.refused("query", env, query_subject(plan), core)
            return None
        return entry

    def _own(
        self, plan: QueryPlan, entry: CatalogEntry, env: Envelope
    ) -> tuple[OwnerReport, pa.Table | None, bytes]:
        """Its own release: the report, the table and the bytes released (the receipt's)."""
        op = QueryRelease(
            plan,
            entry,
            self.grants,
            self.engine,
            self.sql_cache,
            self.noise_key,
            self.pipeline.max_payload_bytes,
        )
        try:
            out = self.pipeline.run(op, env)
        except FedgateError as exc:  # audited by the pipeline
            return OwnerReport(node_id=self.node_id, error=exc.error), None, b""
        if isinstance(out, Explanation):
            return (
                OwnerReport(
                    node_id=self.node_id,
                    grant_id=out.grant_id,
                    epsilon=out.epsilon,
                    explanation=out,
                ),
                None,
                b"",
            )
        p = out.protected
        return (
            OwnerReport(
                node_id=self.node_id,
                groups_released=int(p.facts["groups_released"]),
                l2_noise=bool(p.facts["l2_noise"]),
                epsilon=p.epsilon,
                grant_id=out.grant.id,
                receipt=out.receipt.to_json(),
                no_spend=out.no_spend,
            ),
            p.value,
            p.payload,
        )
