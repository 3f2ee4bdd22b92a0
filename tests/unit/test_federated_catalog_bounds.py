"""The federated catalog's answer is one message within the home's own limit, however
large the members' catalogs; what a peer chooses to say is cut before it is shown."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from federation.membership import Member
from gateway import clock, display, identity, serde
from gateway.config import DEFAULT_MAX_MESSAGE_BYTES
from gateway.roles.federated_catalog import FederatedCatalog, Listing
from gateway.rpc.v1 import common_pb2, gateway_pb2

HOME = Member("home", "H", "127.0.0.1:9", "province")
ME = identity.Identity("node", "home", "H", "1", clock.now())
PEERS = [Member(f"n{i}", f"O{i}", f"127.0.0.1:{i + 1}", "province") for i in range(4)]


def _catalog(member: Member, datasets: int, description: int) -> common_pb2.CatalogResponse:
    info = common_pb2.DatasetInfo(node_id=member.id, name="d", description="x" * description)
    resp = common_pb2.CatalogResponse(node_id=member.id, datasets=[info] * datasets)
    assert resp.ByteSize() < DEFAULT_MAX_MESSAGE_BYTES  # each peer's answer fits
    return resp


class FakeTransport:
    def __init__(self, answer: Callable[[Member], Any]) -> None:
        self._answer = answer

    def members(self) -> list[Member]:
        return PEERS

    def call(self, member: Member, method: str, request: Any, **kw: Any) -> Any:
        return self._answer(member)


def _answer(answer: Callable[[Member], Any]) -> gateway_pb2.FederatedCatalogResponse:
    """The home's FederatedCatalog answer, as its servicer builds it."""
    own = common_pb2.CatalogResponse(node_id="home")
    with ThreadPoolExecutor(4) as pool:
        catalog = FederatedCatalog(FakeTransport(answer), pool, DEFAULT_MAX_MESSAGE_BYTES)  # type: ignore[arg-type]
        listings = catalog.answer("", 5, own.ByteSize())
    return serde.federated_catalog_response(ME, HOME, own, listings)


def test_the_federated_catalog_answer_fits_the_homes_message_limit() -> None:
    """Review (2026-12-05): each peer's PeerCatalog answer was within the limit, but
    nothing bounded their sum: three catalogs of 1.8 MB made a 5.4 MB answer, and every
    FederatedCatalog call failed RESOURCE_EXHAUSTED, for everyone."""
    resp = _answer(lambda m: _catalog(m, 30, 60_000))
    assert resp.ByteSize() <= DEFAULT_MAX_MESSAGE_BYTES, resp.ByteSize()
    listed = [m.node_id for m in resp.members if m.datasets]
    assert listed == ["n0", "n1"]  # in member order, as many as fit
    for m in resp.members[3:]:
        assert m.reachable and not m.datasets
        assert m.error.startswith("catalog too large to list: filter with --name (")
    table = display.federated_catalog_table(resp)
    assert "(not listed)" in table and "catalog too large to list" in table


def test_a_member_that_no_longer_fits_leaves_out_only_its_own_datasets() -> None:
    """A member's 3.9 MB beside another's 1 MB: that member alone is not listed, the
    smaller catalogs after it are."""
    sizes = {"n0": (10, 100_000), "n1": (39, 100_000)}

    def answer(m: Member) -> common_pb2.CatalogResponse:
        return _catalog(m, *sizes.get(m.id, (3, 100)))

    resp = _answer(answer)
    assert resp.ByteSize() <= DEFAULT_MAX_MESSAGE_BYTES
    assert [len(m.datasets) for m in resp.members] == [0, 10, 0, 3, 3]
    assert "(3,90" in resp.members[2].error and resp.members[2].reachable


def test_a_peers_own_words_are_cut() -> None:
    """What a peer names itself, or says in its status, is shown cut (limits.cut)."""

    def answer(m: Member) -> common_pb2.CatalogResponse:
        if m.id == "n0":
            return common_pb2.CatalogResponse(node_id="x" * 1_000_000)
        return common_pb2.CatalogResponse(node_id=m.id)

    resp = _answer(answer)
    assert not resp.members[1].reachable
    assert resp.members[1].error.startswith("answered as 'xxx")
    assert len(resp.members[1].error) < 600 and "[cut, " in resp.members[1].error


def test_listings_that_fit_are_kept_as_they_are() -> None:
    from gateway.roles.federated_catalog import fit

    small = [Listing(p, True, "", 1.0, (common_pb2.DatasetInfo(name="d"),)) for p in PEERS]
    assert fit(small, DEFAULT_MAX_MESSAGE_BYTES) == small
