"""Identity at the edge: each way in without the right certificate is refused and logged."""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from functools import partial
from pathlib import Path

import grpc
import pytest

from gateway import identity
from gateway.client import Client, ClientError, Profile
from gateway.rpc.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc, peer_pb2_grpc
from gateway.tls import secure_channel
from tests.conftest import RunningFederation, run_fedgate

pytestmark = pytest.mark.integration


def wait_for_log(read, needle: str, timeout: float = 5.0) -> str:
    """Logs are written by another process: poll (bounded) until the line appears."""
    deadline = time.monotonic() + timeout
    text = read()
    while needle not in text and time.monotonic() < deadline:
        time.sleep(0.05)
        text = read()
    return text


def rpc_error(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


def whoami_via(fedrun: RunningFederation, node_id: str, cert: Path | None, key: Path | None):
    n = fedrun.fed.node(node_id)
    channel = secure_channel(n.listen, node_id, ca=fedrun.fed.ca_cert, cert=cert, key=key)
    stub = gateway_pb2_grpc.GatewayStub(channel)
    return channel, lambda: stub.WhoAmI(gateway_pb2.WhoAmIRequest(), timeout=5)


def test_identity_comes_from_the_certificate(federation: RunningFederation) -> None:
    with federation.client("li.wei@shanghai") as c:
        me = c.whoami()
    assert (me.node_id, me.caller_role, me.caller_id) == ("shanghai", "analyst", "li.wei@shanghai")
    assert me.caller_org == federation.fed.node("shanghai").org


def test_no_client_certificate_is_refused(federation: RunningFederation) -> None:
    channel, call = whoami_via(federation, "jiangsu", None, None)
    with channel:
        err = rpc_error(call)
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    log = wait_for_log(
        lambda: federation.stdout_log("jiangsu"), "PEER_DID_NOT_RETURN_A_CERTIFICATE"
    )
    assert "Handshake failed" in log and "PEER_DID_NOT_RETURN_A_CERTIFICATE" in log


def test_certificate_from_another_ca_is_refused(
    federation: RunningFederation, tmp_path: Path
) -> None:
    other = tmp_path / "other-ca"
    identity.init_ca(other, name="Some Other CA")
    key_pem, csr_pem = identity.make_csr("analyst", "mallory@elsewhere", "Elsewhere")
    (tmp_path / "m.key").write_bytes(key_pem)
    (tmp_path / "m.pem").write_bytes(identity.sign_csr(other, csr_pem))
    before = federation.stdout_log("zhejiang").count("Handshake failed")
    channel, call = whoami_via(federation, "zhejiang", tmp_path / "m.pem", tmp_path / "m.key")
    with channel:
        err = rpc_error(call)
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    deadline = time.monotonic() + 5
    while federation.stdout_log("zhejiang").count("Handshake failed") == before:
        assert time.monotonic() < deadline, "handshake refusal not logged"
        time.sleep(0.05)
    assert "CERTIFICATE_VERIFY_FAILED" in federation.stdout_log("zhejiang")


def test_expired_certificate_is_refused(federation: RunningFederation, tmp_path: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    cert, key = federation.issue(
        tmp_path,
        "analyst",
        "old.user@shanghai",
        "Shanghai Big Data Center",
        not_before=now - dt.timedelta(days=30),
        not_after=now - dt.timedelta(days=1),
    )
    before = federation.stdout_log("shanghai").count("Handshake failed")
    channel, call = whoami_via(federation, "shanghai", cert, key)
    with channel:
        err = rpc_error(call)
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    deadline = time.monotonic() + 5
    while federation.stdout_log("shanghai").count("Handshake failed") == before:
        assert time.monotonic() < deadline, "handshake refusal not logged"
        time.sleep(0.05)
    assert "certificate has expired" in federation.stdout_log("shanghai")


def test_revoked_certificate_is_refused_without_restart(
    federation: RunningFederation, tmp_path: Path
) -> None:
    cert, key = federation.issue(tmp_path, "analyst", "leaver@anhui", "Anhui Data")
    channel, call = whoami_via(federation, "anhui", cert, key)
    with channel:
        assert call().caller_id == "leaver@anhui"
        result = run_fedgate(
            "ca", "revoke", "--dir", str(federation.fed.ca_dir), "--cert", str(cert)
        )
        assert result.returncode == 0, result.stderr
        err = rpc_error(call)
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "revoked" in err.details()
    log = wait_for_log(lambda: federation.node_log("anhui"), "leaver@anhui")
    assert "code=UNAUTHENTICATED" in log and "revoked" in log


def test_analyst_may_not_call_node_to_node_rpc(federation: RunningFederation) -> None:
    profile = Profile.load(federation.fed.profile_path("li.wei@shanghai"))
    n = federation.fed.node("hefei")
    with secure_channel(n.listen, "hefei", ca=profile.ca, cert=profile.cert, key=profile.key) as ch:
        err = rpc_error(
            lambda: peer_pb2_grpc.PeerStub(ch).PeerCatalog(common_pb2.CatalogRequest(), timeout=5)
        )
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "analyst" in err.details() and "PeerCatalog" in err.details()
    log = wait_for_log(lambda: federation.node_log("hefei"), "analyst:li.wei@shanghai")
    assert "refused method=/fedgate.v1.Peer/PeerCatalog caller=analyst:li.wei@shanghai" in log


def test_node_not_in_membership_is_refused(federation: RunningFederation, tmp_path: Path) -> None:
    cert, key = federation.issue(tmp_path, "node", "rogue", "Rogue Bureau")
    n = federation.fed.node("wuhu")
    with secure_channel(n.listen, "wuhu", ca=federation.fed.ca_cert, cert=cert, key=key) as ch:
        err = rpc_error(
            lambda: peer_pb2_grpc.PeerStub(ch).PeerCatalog(common_pb2.CatalogRequest(), timeout=5)
        )
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "'rogue' is not in the federation membership" in err.details()
    log = wait_for_log(lambda: federation.node_log("wuhu"), "node:rogue")
    assert "PERMISSION_DENIED" in log


def test_refusals_at_the_door_are_audited_once_a_minute(
    federation: RunningFederation, tmp_path: Path
) -> None:
    """A client looping on a method its role may not call, or a node that is not a member,
    adds one audit entry (then counts), not one per call: each was ~1 KB of append-only
    log (review, 2026-12-04). A refusal inside a handler is still audited every time."""
    analyst_cert, analyst_key = federation.issue(tmp_path, "analyst", "looper@anhui", "Anhui Data")
    rogue_cert, rogue_key = federation.issue(tmp_path, "node", "rogue2", "Rogue Bureau")
    n = federation.fed.node("wuhu")
    for cert, key, who, code in (
        (analyst_cert, analyst_key, "looper@anhui", grpc.StatusCode.PERMISSION_DENIED),
        (rogue_cert, rogue_key, "node:rogue2", grpc.StatusCode.PERMISSION_DENIED),
    ):
        ca = federation.fed.ca_cert
        with secure_channel(n.listen, "wuhu", ca=ca, cert=cert, key=key) as ch:
            stub = peer_pb2_grpc.PeerStub(ch)
            for _ in range(20):
                err = rpc_error(partial(stub.PeerCatalog, common_pb2.CatalogRequest(), timeout=5))
                assert err.code() == code
        mine = [e for e in federation.audit("wuhu", "rpc.refused") if who in e["caller"]]
        assert len(mine) == 1, mine
    # Inside a handler (a grant refusal) every refusal is still its own entry.
    with federation.client("li.wei@shanghai") as c:
        before = len(federation.audit("shanghai", "rpc.refused"))
        for _ in range(2):
            with pytest.raises(ClientError):
                c.query("SELECT no_such_column FROM no_such_dataset")
    assert len(federation.audit("shanghai", "rpc.refused")) == before + 2


def test_member_node_may_call_peer_rpc(federation: RunningFederation) -> None:
    """The positive twin of the two tests above: a member node's certificate is accepted."""
    with federation.peer_channel("anhui", "hefei") as ch:
        resp = peer_pb2_grpc.PeerStub(ch).PeerCatalog(common_pb2.CatalogRequest(), timeout=5)
    assert resp.node_id == "hefei" and len(resp.datasets) > 0


def test_server_must_be_the_node_we_expect(federation: RunningFederation) -> None:
    """Connecting to anhui's address while expecting hefei fails the TLS name check."""
    profile = Profile.load(federation.fed.operator_profile("hefei"))
    wrong = Profile(
        "hefei", federation.fed.node("anhui").listen, profile.ca, profile.cert, profile.key
    )
    with Client(wrong, timeout=5) as c, pytest.raises(ClientError) as info:
        c.whoami()
    assert info.value.code == grpc.StatusCode.UNAVAILABLE
    # said as such, not as our certificate refused (a newcomer's profile named another node)
    assert info.value.args[0].startswith(
        f"the TLS handshake failed: the node at {wrong.address} is not 'hefei' (the "
        "profile's `node`), or its certificate does not name it ("
    ), info.value


def test_oversized_message_is_refused_by_the_node_and_it_survives(
    federation: RunningFederation,
) -> None:
    """The client may send 16 MiB; the node's limit (4 MiB) refuses it."""
    profile = Profile.load(federation.fed.profile_path("li.wei@shanghai"))
    n = federation.fed.node("shanghai")
    with secure_channel(
        n.listen,
        "shanghai",
        ca=profile.ca,
        cert=profile.cert,
        key=profile.key,
        max_message_bytes=16 * 1024 * 1024,
    ) as ch:
        stub = gateway_pb2_grpc.GatewayStub(ch)
        err = rpc_error(
            lambda: stub.Catalog(
                common_pb2.CatalogRequest(name_contains="x" * (5 << 20)), timeout=10
            )
        )
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert stub.WhoAmI(gateway_pb2.WhoAmIRequest(), timeout=5).node_id == "shanghai"


def test_deleted_crl_keeps_revocations_in_force(
    federation: RunningFederation, tmp_path: Path
) -> None:
    cert, key = federation.issue(tmp_path, "analyst", "gone@miit", "MIIT")
    assert (
        run_fedgate(
            "ca", "revoke", "--dir", str(federation.fed.ca_dir), "--cert", str(cert)
        ).returncode
        == 0
    )
    channel, call = whoami_via(federation, "miit", cert, key)
    crl = federation.fed.ca_dir / "crl.pem"
    saved = crl.read_bytes()
    with channel:
        assert rpc_error(call).code() == grpc.StatusCode.UNAUTHENTICATED
        crl.unlink()
        try:
            assert rpc_error(call).code() == grpc.StatusCode.UNAUTHENTICATED
            crl.write_text("garbage")
            assert rpc_error(call).code() == grpc.StatusCode.UNAUTHENTICATED
        finally:
            crl.write_bytes(saved)
    assert "CRL not reloaded, last good list kept" in federation.node_log("miit")


def test_analyst_sees_no_min_max_of_protected_columns(federation: RunningFederation) -> None:
    with federation.client("li.wei@shanghai") as c:
        datasets = {d.name: d for d in c.catalog().datasets}
    er = {q.name: q for q in datasets["enterprise_registry"].quality.columns}
    air = {q.name: q for q in datasets["air_quality"].quality.columns}
    # enterprise_registry is L2: no column's extremes, numeric ones included
    assert {"employees", "revenue", "registered_capital", "founding_year"} <= set(er)
    shown = [(n, f) for n, q in er.items() for f in ("min", "max") if q.HasField(f)]
    assert not shown, shown
    # air_quality is L1 open data: its numeric columns' extremes are shown
    assert air["aqi"].HasField("min") and air["aqi"].HasField("max")
    assert air["aqi"].min <= air["aqi"].max


def test_only_the_owners_operators_see_statistics_of_l3_and_l4_columns(
    federation: RunningFederation,
) -> None:
    """Review (2026-12-05): the exact null rate of every column went to every caller, an
    L4 column's (nothing of it may leave the node) and an L3 column's (its other
    statistics need DP) too. Such columns have no quality entry but for the owner's own
    operators; the schema still names them, and L1/L2 columns keep their null rate."""
    from gateway import descriptor

    src = descriptor.load(
        next(p for p in federation.written["shanghai"] if p.stem == "enterprise_registry")
    )
    levels = {"revenue": "L4", "employees": "L3"}
    columns = tuple(dataclasses.replace(c, level=levels.get(c.name, c.level)) for c in src.columns)
    federation.register_copy("shanghai", "enterprise_registry", "registry_levels", columns=columns)

    def quality(d: common_pb2.DatasetInfo) -> dict[str, common_pb2.ColumnQuality]:
        return {q.name: q for q in d.quality.columns}

    with federation.client("li.wei@shanghai") as c:
        own = {d.name: d for d in c.catalog().datasets}
        federated = c.federated_catalog("social_insurance")
    mixed = own["registry_levels"]
    assert {"revenue", "employees"} <= {col.name for col in mixed.columns}
    assert {"revenue", "employees"}.isdisjoint(quality(mixed))
    assert "city" in quality(mixed) and not quality(mixed)["city"].HasField("max")
    assert own["social_insurance"].quality.rows > 0  # L3, its person_id L4: no column's
    assert not own["social_insurance"].quality.columns
    peers = [d for m in federated.members if m.node_id != "shanghai" for d in m.datasets]
    assert peers and all(not d.quality.columns for d in peers)
    with federation.client("ops@shanghai") as c:
        mine = {d.name: d for d in c.catalog().datasets}
    assert quality(mine["registry_levels"])["revenue"].HasField("max")
    assert "person_id" in quality(mine["social_insurance"])


def test_operator_of_another_node_may_not_register(federation: RunningFederation) -> None:
    descriptor = federation.written["anhui"][0]
    with federation.client("ops@hefei", node="anhui") as c, pytest.raises(ClientError) as info:
        c.register(descriptor)
    assert info.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert "not an operator of this node" in str(info.value)


def test_analyst_may_not_register(federation: RunningFederation) -> None:
    descriptor = federation.written["shanghai"][0]
    with federation.client("li.wei@shanghai") as c, pytest.raises(ClientError) as info:
        c.register(descriptor)
    assert info.value.code == grpc.StatusCode.PERMISSION_DENIED
    log = wait_for_log(lambda: federation.node_log("shanghai"), "RegisterDataset caller=analyst")
    assert "refused method=/fedgate.v1.Gateway/RegisterDataset caller=analyst" in log


def test_health_and_reflection_are_served_over_mtls(federation: RunningFederation) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    profile = Profile.load(federation.fed.profile_path("li.wei@shanghai"))
    n = federation.fed.node("shanghai")
    with secure_channel(
        n.listen, "shanghai", ca=profile.ca, cert=profile.cert, key=profile.key
    ) as ch:
        status = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert status.status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(ch)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        (answer,) = list(stub.ServerReflectionInfo(iter([request]), timeout=5))
    names = {s.name for s in answer.list_services_response.service}
    assert {"fedgate.v1.Gateway", "fedgate.v1.Peer", "grpc.health.v1.Health"} <= names


@pytest.mark.parametrize("who", ["li.wei@shanghai", "ops@hefei"])
def test_analysts_and_other_nodes_operators_may_not_manage_grants(
    federation: RunningFederation, who: str
) -> None:
    """Only a node's own operators write, list or revoke its grants."""
    from gateway.policy.model import Grant

    dataset = "enterprise_registry"
    grant = Grant(
        id="",
        dataset=dataset,
        grantee_kind="org",
        grantee="Shanghai Big Data Center",
        columns={"city": ("group_by",)},
        min_group_size=10,
        operations=("query",),
    )
    with federation.client(who, node="anhui") as c:
        before = len(federation.audit("anhui", "grant.written"))
        for attempt in (
            lambda: c.add_grant(grant),
            lambda: c.list_grants(dataset),
            lambda: c.revoke_grant("g-any"),
        ):
            with pytest.raises(ClientError) as info:
                attempt()
            assert info.value.code == grpc.StatusCode.PERMISSION_DENIED, info.value
    assert len(federation.audit("anhui", "grant.written")) == before
