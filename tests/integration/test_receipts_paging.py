"""A long training run's receipts are listed whole (review, 2026-12-05).

A run keeps one receipt per owner and message: 3 owners x 500 rounds is ~3 000 receipts of
~1.65 KB, 4.95 MB, over the 4 MiB message limit. ``Gateway/Receipts`` answered them in one
reply, which gRPC failed with RESOURCE_EXHAUSTED after the edge had counted the call OK
(``fedgate receipt list`` failed, nothing in the node's log). Now the reply is paged, each
page bounded in bytes, and the client and the CLI read every page.

The receipts are real: signed with each owner node's key and kept by the home's own
``ReceiptStore`` (its checks included) before the home node starts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest

from gateway import identity
from gateway.client import Client, Profile
from gateway.config import DEFAULT_MAX_MESSAGE_BYTES
from gateway.demo.launcher import start_node, stop_nodes, wait_serving
from gateway.demo.provision import REGION_DIR, Federation, provision
from gateway.receipt_store import ReceiptStore
from gateway.receipts import ReceiptCheck, Signer
from gateway.rpc.v1 import gateway_pb2, gateway_pb2_grpc
from gateway.state import State
from gateway.tls import secure_channel
from tests.conftest import run_fedgate

pytestmark = pytest.mark.integration

HOME = "anhui"
OWNERS = ("anhui", "hefei", "wuhu")
ROUNDS = 500
RUN = "run-3f2a9c1e-long"


def _signer(fed: Federation, node: str) -> Signer:
    tls = fed.node_dir(node) / "tls"
    return Signer(identity.load_key(tls / "node.key"), (tls / "node.pem").read_bytes())


def _receipts(fed: Federation) -> list[tuple[str, str]]:
    """A run's receipts as a home keeps them: (``owner/n``, signed JSON), 1 + 2 x rounds
    an owner (the statistics, then each round's fit and evaluate)."""
    out = []
    for owner in OWNERS:
        signer = _signer(fed, owner)
        for n in range(1 + 2 * ROUNDS):
            step = "query.stats" if n == 0 else ("train" if n % 2 else "evaluate")
            body = {
                "kind": "release",
                "time": "2026-12-05T10:00:00Z",
                "owner": owner,
                "request_id": RUN,
                "operation": "train",
                "dataset": "enterprise_registry",
                "grant_id": "g-7d1c0b3a4e5f6a7b8c9d0e1f",
                "requester": "analyst:li.wei@shanghai",
                "home_node": HOME,
                "purpose": "credit risk model of the delta's enterprises",
                "task": "logreg",
                "step": step,
                "round": (n + 1) // 2,
                "rows": 12_000,
                "epsilon": 0.0,
                "result_digest": hashlib.sha256(f"{owner}/{n}".encode()).hexdigest(),
                "audit_seq": 10 + n,
                "audit_hash": hashlib.sha256(f"{owner}:{n}".encode()).hexdigest(),
            }
            out.append((f"{owner}/{n}", signer.sign(body).to_json()))
    return out


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Federation, list[str]]]:
    """The home node, started on a state that keeps a long run's receipts."""
    fed = provision(tmp_path_factory.mktemp("receipts"), REGION_DIR, free_ports=True)
    kept = _receipts(fed)
    state = State(fed.node_dir(HOME) / "state.sqlite3")
    try:
        store = ReceiptStore(state, ReceiptCheck(identity.load_bundle(fed.ca_cert)))
        store.keep(RUN, kept, {"kind": "train.finished", "request_id": RUN})
        assert len(store.for_request(RUN)) == len(kept)  # each one held (none refused)
    finally:
        state.close()
    total = sum(len(r) for _, r in kept)
    assert total > DEFAULT_MAX_MESSAGE_BYTES, total  # more than one reply may carry
    proc = start_node(HOME, fed.config_path(HOME), fed.node_dir(HOME) / "stdout.log")
    try:
        wait_serving(
            [proc],
            {HOME: fed.node(HOME).listen},
            Profile.load(fed.operator_profile(HOME)),
            timeout=60,
        )
        yield fed, [r for _, r in kept]
    finally:
        stop_nodes([proc])


def test_the_client_reads_every_receipt_of_a_long_run_page_by_page(
    home: tuple[Federation, list[str]],
) -> None:
    fed, kept = home
    ops = Profile.load(fed.operator_profile(HOME))
    with Client(ops, timeout=30) as c:
        got = c.receipts(RUN)
    assert len(got) == len(kept) == len(OWNERS) * (1 + 2 * ROUNDS)
    assert got == kept  # in the order kept, each once
    # each page is bounded in bytes, well under the message limit
    with secure_channel(fed.node(HOME).listen, HOME, ca=ops.ca, cert=ops.cert, key=ops.key) as ch:
        stub = gateway_pb2_grpc.GatewayStub(ch)
        first = stub.Receipts(gateway_pb2.ReceiptsRequest(request_id=RUN), timeout=30)
        assert first.next > 0 and 0 < len(first.receipts) < len(kept)
        assert first.ByteSize() <= DEFAULT_MAX_MESSAGE_BYTES // 2
        pages, after = 0, 0
        for _ in range(len(kept) + 1):  # a page holds one receipt at least
            page = stub.Receipts(
                gateway_pb2.ReceiptsRequest(request_id=RUN, after=after), timeout=30
            )
            pages += 1
            assert page.ByteSize() <= DEFAULT_MAX_MESSAGE_BYTES // 2
            if not page.next:
                break
            after = page.next
        else:
            pytest.fail(f"still a next page after {pages} pages of {len(kept)} receipts")
        assert pages >= 3


def test_fedgate_receipt_list_lists_every_receipt_of_a_long_run(
    home: tuple[Federation, list[str]],
) -> None:
    fed, kept = home
    listed = run_fedgate(
        "receipt", "list", "--profile", str(fed.operator_profile(HOME)), "--request", RUN
    )
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert len(lines) == len(kept), (len(lines), listed.stderr[-500:])
    assert sum(line.startswith("hefei: enterprise_registry") for line in lines) == 1 + 2 * ROUNDS
    assert "NOT VALID" not in listed.stdout
