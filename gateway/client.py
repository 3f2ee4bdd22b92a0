"""Python client for a home node. Used by the CLI, tests, notebooks and the demo.

A *profile* says which node to talk to and with which certificate:

    node = "shanghai"                 # the node id its certificate must carry
    address = "127.0.0.1:47001"
    ca = "pki/ca.pem"                 # relative paths are relative to the profile file
    cert = "users/li.wei.pem"
    key = "users/li.wei.key"
"""

from __future__ import annotations

import dataclasses
import threading
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pyarrow as pa

from federation.partials import from_ipc
from federation.psi.frames import Progress, PsiAnswer
from federation.reports import OwnerReport
from federation.training.app_bundle import AppBundle
from gateway import descriptor as descriptor_mod
from gateway import serde
from gateway.access import AccessDecision, AccessRequest
from gateway.config import is_port, toml_string
from gateway.errors import InvalidArgument
from gateway.policy.model import Grant
from gateway.roles.home import QueryAsk
from gateway.roles.psi_home import PsiAsk, PsiSideAsk
from gateway.roles.train_home import ModelPiece, OwnerBatch, TrainAsk, TrainResult, TrainRound
from gateway.rpc.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc
from gateway.status import STATUS, answered_by_a_node, error_of_rpc
from gateway.tls import check_pair, secure_channel
from gateway.training.apps import ApprovedApp
from gateway.training.runs import RunStatus
from gateway.training.transfers import MAX_MESSAGE_BYTES

# The text of a training run's owner reports the client holds (one per owner and message,
# ~1.5 KB each: 1 000 rounds of SecAgg+ over 40 owners is ~300 MB); far beyond, a home is
# misbehaving.
MAX_RUN_REPORT_BYTES = 1 << 30
T = TypeVar("T")
MAX_PAGES = 100_000  # of a paged list (witnessed heads: 10^8 of them)


class ClientError(Exception):
    """An RPC failed; ``code`` is the gRPC status, the message is for people, ``details``
    the facts a program acts on (e.g. ``owner`` and ``request_id`` of a refusal)."""

    def __init__(
        self, code: grpc.StatusCode, message: str, details: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.details: Mapping[str, str] = dict(details or {})

    def __str__(self) -> str:
        return f"{self.code.name}: {self.args[0]}"


@dataclass(frozen=True)
class Profile:
    node: str
    address: str
    ca: Path
    cert: Path
    key: Path

    @staticmethod
    def load(path: Path | str) -> Profile:
        path = Path(path)
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InvalidArgument(f"profile {path} does not exist") from None
        except (IsADirectoryError, UnicodeDecodeError):
            raise InvalidArgument(
                f"profile {path} is not a profile (not a TOML text file)"
            ) from None
        except tomllib.TOMLDecodeError as exc:
            raise InvalidArgument(f"profile {path} is not valid TOML: {exc}") from None
        fields = {}
        for name in ("node", "address", "ca", "cert", "key"):
            if name not in raw:
                raise InvalidArgument(f"profile {path} is missing the field {name!r}")
            if not isinstance(raw[name], str) or not raw[name] or "\0" in raw[name]:
                raise InvalidArgument(f"profile {path}: {name} must be a non-empty string")
            fields[name] = raw[name]
        host, _, port = fields["address"].rpartition(":")
        if not host or not is_port(port):
            # gRPC would quietly dial port 443
            raise InvalidArgument(f"profile {path}: address {fields['address']!r} is not host:port")
        base = path.parent
        profile = Profile(
            node=fields["node"],
            address=fields["address"],
            ca=(base / fields["ca"]).resolve(),
            cert=(base / fields["cert"]).resolve(),
            key=(base / fields["key"]).resolve(),
        )
        check_pair(profile.cert, profile.key)  # as node start checks its own (tls.key)
        return profile

    def dumps(self) -> str:
        """TOML that ``load`` reads back (quotes, backslashes, control characters)."""
        return "".join(
            f"{k} = {toml_string(v)}\n"
            for k, v in (
                ("node", self.node),
                ("address", self.address),
                ("ca", self.ca),
                ("cert", self.cert),
                ("key", self.key),
            )
        )


# How this client's own gRPC channel reports that it could not connect; a node's answers
# (say, a home's "owner X is unavailable (...)") never start so.
_OWN_CONNECTION = "failed to connect to all addresses"
# ... and what it says when the TLS handshake failed on a certificate: the node refused
# ours (it closes the connection mid-handshake: "Socket closed"), or its own is not the
# node we expected or not signed by our CA.
_CERTIFICATE_HINTS = (
    "handshake",
    "ssl",
    "tls",
    "certificate",
    "hostname",
    "peer name",
    "socket closed",
)
# ... and what it says when the node's certificate does not name the profile's ``node``
_NOT_THE_NODE = "hostname verification check failed"


def _explain(exc: grpc.RpcError, profile: Profile | None = None) -> ClientError:
    """A failed call as a ``ClientError``. Only a failure of this client's own connection
    that says the handshake failed on a certificate is explained as one; anything a node
    answered (which names the owner, the peer or the reason itself) is passed on as is.
    With the ``profile`` called through, a failed name check says which node was expected
    where (a profile naming another node read as our certificate refused)."""
    error = error_of_rpc(exc)
    code, details = STATUS[error.code], error.reason
    lowered = details.lower()
    if (
        code == grpc.StatusCode.UNAVAILABLE
        and not answered_by_a_node(exc)  # a node's answer is about its peers, not us
        and lowered.startswith(_OWN_CONNECTION)
        and any(hint in lowered for hint in _CERTIFICATE_HINTS)
    ):
        if profile is not None and _NOT_THE_NODE in lowered:
            details = (
                f"the TLS handshake failed: the node at {profile.address} is not "
                f"{profile.node!r} (the profile's `node`), or its certificate does not name "
                f"it ({details})"
            )
        else:
            details = (
                "the TLS handshake failed: the node refused our certificate (not signed by "
                f"the federation CA, expired or missing) or is not the node we expected "
                f"({details})"
            )
    return ClientError(code, details, error.details)


@dataclass(frozen=True)
class QueryResult:
    """A federated answer and how it was made: who contributed, what was withheld."""

    table: pa.Table
    request_id: str
    owners: tuple[common_pb2.OwnerResult, ...]
    missing: tuple[str, ...]
    epsilon_spent: float
    plan: str

    @property
    def contributors(self) -> list[str]:
        return [o.node_id for o in self.owners if o.ok]

    @property
    def noised(self) -> list[str]:
        """The owners whose partial carries sticky L2 noise (docs/security.md)."""
        return [o.node_id for o in self.owners if o.ok and o.l2_noise]

    @property
    def receipts(self) -> dict[str, str]:
        return {o.node_id: o.receipt for o in self.owners if o.receipt}


class Client:
    """Talks to one home node over mTLS; identity is the profile's certificate."""

    def __init__(self, profile: Profile, *, timeout: float = 30.0) -> None:
        self.profile = profile
        self.timeout = timeout
        self._channel = secure_channel(
            profile.address, profile.node, ca=profile.ca, cert=profile.cert, key=profile.key
        )
        self._stub = gateway_pb2_grpc.GatewayStub(self._channel)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def _call(self, method: str, request: Any, timeout: float | None = None) -> Any:
        try:
            return getattr(self._stub, method)(request, timeout=timeout or self.timeout)
        except grpc.RpcError as exc:
            raise _explain(exc, self.profile) from None

    def whoami(self) -> gateway_pb2.WhoAmIResponse:
        return self._call("WhoAmI", serde.whoami_request())

    def catalog(self, name_contains: str = "") -> common_pb2.CatalogResponse:
        return self._call("Catalog", serde.catalog_request(name_contains))

    def federated_catalog(
        self, name_contains: str = "", member_timeout: float = 0.0
    ) -> gateway_pb2.FederatedCatalogResponse:
        request = serde.federated_catalog_request(name_contains, member_timeout)
        return self._call("FederatedCatalog", request)

    def query(
        self,
        sql: str,
        *,
        purpose: str = "",
        allow_partial: bool = False,
        nodes: tuple[str, ...] | list[str] = (),
        timeout: float | None = None,
    ) -> QueryResult:
        """Run federated SQL; returns a pyarrow Table plus its provenance."""
        resp = self._call(
            "Query",
            serde.query_request(
                QueryAsk(sql, purpose=purpose, nodes=tuple(nodes), allow_partial=allow_partial)
            ),
            timeout=timeout,
        )
        return QueryResult(
            table=from_ipc(resp.arrow_ipc),
            request_id=resp.request_id,
            owners=tuple(resp.owners),
            missing=tuple(resp.missing),
            epsilon_spent=resp.epsilon_spent,
            plan=resp.plan,
        )

    def psi(
        self,
        left: str,
        right: str,
        *,
        left_where: str = "",
        right_where: str = "",
        purpose: str = "",
        explain: bool = False,
        timeout: float | None = None,
        on_progress: Callable[[Progress], None] | None = None,
    ) -> PsiAnswer:
        """The size of the intersection of two owners' identifier columns, each given as
        ``NODE:DATASET.COLUMN``; ``on_progress`` sees the matcher's progress events.
        ``explain`` is the dry run: each owner's decision and who would learn what."""
        ask = PsiAsk(
            psi_side(left, left_where, "left"),
            psi_side(right, right_where, "right"),
            purpose=purpose,
            explain=explain,
        )
        try:
            for msg in self._stub.Psi(serde.psi_request(ask), timeout=timeout or self.timeout):
                event = serde.psi_event_from_proto(msg)
                if isinstance(event, PsiAnswer):
                    return event
                if on_progress is not None:
                    on_progress(event)
        except grpc.RpcError as exc:
            raise _explain(exc, self.profile) from None
        raise ClientError(grpc.StatusCode.UNAVAILABLE, "the home ended the PSI session early")

    def train(
        self,
        ask: TrainAsk,
        *,
        timeout: float | None = None,
        on_round: Callable[[TrainRound], None] | None = None,
    ) -> TrainRun:
        """Start a federated training run (docs/training.md); the handle shows its rounds
        as they end, cancels it, and waits for its result."""
        call = self._stub.Train(serde.train_request(ask), timeout=timeout or self.timeout)
        return TrainRun(call, on_round, self.profile)

    def train_runs(self, run_id: str = "") -> list[RunStatus]:
        """Your training runs this home remembers (one, with ``run_id``)."""
        resp = self._call("TrainRuns", serde.train_runs_request(run_id))
        return [serde.train_run_status_from_proto(r) for r in resp.runs]

    def train_cancel(self, run_id: str) -> RunStatus:
        """Stop one of your running runs, at every node."""
        resp = self._call("TrainCancel", serde.train_cancel_request(run_id))
        return serde.train_run_status_from_proto(resp)

    def explain(
        self, sql: str, *, purpose: str = "", nodes: tuple[str, ...] | list[str] = ()
    ) -> gateway_pb2.QueryResponse:
        """Dry run: which owners, which grants, which columns in which role, what cost."""
        ask = QueryAsk(sql, purpose=purpose, nodes=tuple(nodes), explain=True, allow_partial=True)
        return self._call("Query", serde.query_request(ask))

    def add_grant(self, grant: Grant) -> common_pb2.Grant:
        """Write a grant (its id, uses and times are the node's to fill in)."""
        return self._call("AddGrant", serde.add_grant_request(grant))

    def list_grants(self, dataset: str = "") -> list[common_pb2.Grant]:
        return list(self._call("ListGrants", serde.list_grants_request(dataset)).grants)

    def revoke_grant(self, grant_id: str) -> common_pb2.Grant:
        return self._call("RevokeGrant", serde.revoke_grant_request(grant_id))

    def approve_app(self, bundle: AppBundle, name: str = "") -> ApprovedApp:
        """Store a custom training app at this (your own) node as reviewed: runs that
        name its digest may then execute it here (docs/training.md, custom apps)."""
        req = serde.approve_app_request(name, bundle)
        return serde.app_info_from_proto(self._call("ApproveApp", req))

    def list_apps(self) -> list[ApprovedApp]:
        resp = self._call("ListApps", serde.list_apps_request())
        return [serde.app_info_from_proto(a) for a in resp.apps]

    def revoke_app(self, digest: str) -> ApprovedApp:
        resp = self._call("RevokeApp", serde.revoke_app_request(digest))
        return serde.app_info_from_proto(resp)

    def audit_export_chunks(self) -> Iterator[bytes]:
        """Your node's export, chunk by chunk as the node streams it: a log of millions of
        entries was joined whole in memory here (review, 2026-12-05). The call starts at
        the first chunk asked for; leaving the loop early cancels it."""
        chunks = self._stub.AuditExport(serde.audit_export_request(), timeout=600)
        try:
            for c in chunks:
                yield c.data
        except grpc.RpcError as exc:
            raise _explain(exc, self.profile) from None
        finally:
            chunks.cancel()  # a no-op once the stream ended

    def audit_export(self) -> bytes:
        """The whole export at once (``audit_export_chunks`` for a large log)."""
        return b"".join(self.audit_export_chunks())

    def audit_show(self, request_id: str) -> list[str]:
        req = serde.audit_show_request(request_id)
        return list(self._call("AuditShow", req).entries)

    def receipts(self, request_id: str) -> list[str]:
        """Every receipt your node keeps for the request, in the order kept, a page per
        call (a long training run keeps thousands: one reply of them all outgrew the
        message limit)."""

        def page(after: int) -> tuple[list[str], int]:
            resp = self._call("Receipts", serde.receipts_request(request_id, after))
            return list(resp.receipts), resp.next

        return _paged(page, "receipts")

    def witness_now(self) -> gateway_pb2.WitnessNowResponse:
        return self._call("WitnessNow", serde.witness_now_request())

    def witnessed_heads(self, node: str) -> Iterator[common_pb2.WitnessedHead]:
        """Every head of ``node`` your node countersigned, by size, a page per call."""
        after = 0
        for _page in range(MAX_PAGES):
            req = serde.witnessed_heads_request(node, after)
            heads = [h for h in self._call("WitnessedHeads", req).heads if h.size > after]
            if not heads:  # the end (a node that does not page: its one page, not twice)
                return
            yield from heads
            after = heads[-1].size
        raise ClientError(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"more than {MAX_PAGES} pages of witnessed heads: the list was not read whole",
        )

    def submit_access_request(self, req: AccessRequest) -> AccessRequest:
        """Ask a data owner for access; your home node fills in who you are."""
        resp = self._call("SubmitAccessRequest", serde.access_request_to_proto(req))
        return serde.access_request_from_proto(resp)

    def access_request_status(self, owner: str, request_id: str) -> AccessRequest:
        req = serde.access_status_query(owner, request_id)
        return serde.access_request_from_proto(self._call("AccessRequestStatus", req))

    def list_access_requests(self, state: str = "") -> list[AccessRequest]:
        """Every request for your node's datasets (in ``state``), a page per call."""

        def page(after: int) -> tuple[list[AccessRequest], int]:
            req = serde.list_access_requests_request(state, after)
            resp = self._call("ListAccessRequests", req)
            return [serde.access_request_from_proto(r) for r in resp.requests], resp.next

        return _paged(page, "access requests")

    def decide_access_request(self, decision: AccessDecision) -> AccessRequest:
        resp = self._call("DecideAccessRequest", serde.access_decision_to_proto(decision))
        return serde.access_request_from_proto(resp)

    def disclosure(
        self, node: str = "", since: str = "", until: str = ""
    ) -> gateway_pb2.DisclosureReport:
        req = serde.disclosure_request(node, since, until)
        return self._call("Disclosure", req)

    def register(self, descriptor_path: Path) -> gateway_pb2.RegisterDatasetResponse:
        desc = descriptor_mod.load(descriptor_path)
        request = serde.register_request(desc)
        return self._call("RegisterDataset", request, timeout=max(self.timeout, 300))


def psi_side(text: str, where: str, which: str) -> PsiSideAsk:
    """``NODE:DATASET.COLUMN`` as one side of a PSI."""
    node, _, rest = text.partition(":")
    dataset, _, column = rest.partition(".")
    if not (node and dataset and column) or "." in column:
        raise InvalidArgument(f"--{which} {text!r}: write NODE:DATASET.COLUMN")
    return PsiSideAsk(node.strip(), dataset.strip(), column.strip(), where)


class TrainRun:
    """A training run in progress: its rounds so far, ``cancel``, and ``result``.

    The run's stream is read on a thread of its own; cancelling ends the call, and the
    home stops the run at every node (nothing more is trained or released)."""

    def __init__(
        self,
        call: Any,
        on_round: Callable[[TrainRound], None] | None,
        profile: Profile | None = None,
    ) -> None:
        self._call = call
        self._profile = profile
        self._on_round = on_round
        self.rounds: list[TrainRound] = []
        self._result: TrainResult | None = None
        self._error: ClientError | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._read, name="fedgate-train", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            model = bytearray()
            owners: list[OwnerReport] = []
            held = 0
            for msg in self._call:
                event = serde.train_event_from_proto(msg)
                if isinstance(event, OwnerBatch):
                    owners += event.owners
                    held += sum(len(o.receipt) + 256 for o in event.owners)
                    if held > MAX_RUN_REPORT_BYTES:
                        raise ClientError(
                            grpc.StatusCode.RESOURCE_EXHAUSTED, "the owner reports pass 1 GiB"
                        )
                    continue
                if isinstance(event, ModelPiece):
                    model += event.data
                    if len(model) > MAX_MESSAGE_BYTES:
                        raise ClientError(
                            grpc.StatusCode.RESOURCE_EXHAUSTED, "the model is too large"
                        )
                    continue
                if isinstance(event, TrainResult):
                    if model:
                        event = dataclasses.replace(event, model_npz=bytes(model))
                    if owners:
                        event = dataclasses.replace(event, owners=(*owners, *event.owners))
                    self._result = event
                    break
                self.rounds.append(event)
                if self._on_round is not None:
                    self._on_round(event)
            if self._result is None:
                self._error = ClientError(
                    grpc.StatusCode.UNAVAILABLE, "the home ended the run without a result"
                )
        except grpc.RpcError as exc:
            self._error = _explain(exc, self._profile)
        except ClientError as exc:
            self._error = exc
            self._call.cancel()
        finally:
            self._done.set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def cancel(self) -> None:
        self._call.cancel()

    def result(self, timeout: float | None = None) -> TrainResult:
        if not self._done.wait(timeout):
            raise TimeoutError("the run has not finished")
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result


def _paged(page: Callable[[int], tuple[list[T], int]], what: str) -> list[T]:
    """Every item of a paged list: ``page(after)`` gives a page and the position to ask
    after next, which a last page (or a node that does not page) leaves at or before
    ``after``; at most ``MAX_PAGES`` calls."""
    out: list[T] = []
    after = 0
    for _ in range(MAX_PAGES):
        items, following = page(after)
        out.extend(items)
        if following <= after:
            return out
        after = following
    raise ClientError(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        f"more than {MAX_PAGES} pages of {what}: the list was not read whole",
    )
