"""Access requests, grant lifecycle in flight, and the public disclosure report."""

from __future__ import annotations

import json
import threading
import time

import grpc
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gateway import descriptor
from gateway.client import ClientError
from tests.conftest import RunningFederation, run_fedgate

pytestmark = pytest.mark.integration

ASK = "SELECT industry_section, COUNT(*) AS n FROM jiangsu.{ds} GROUP BY industry_section"


def _audit_kinds(federation: RunningFederation, node: str, request_id: str) -> list[str]:
    with federation.client(f"ops@{node}") as ops:
        return [json.loads(e)["kind"] for e in ops.audit_show(request_id)]


def test_access_request_approved_writes_a_grant(federation: RunningFederation) -> None:
    federation.register_copy("jiangsu", "enterprise_registry", "er_asked")
    analyst = str(federation.fed.profile_path("zhang.min@anhui"))
    with federation.client("zhang.min@anhui") as c, pytest.raises(ClientError) as before:
        c.query(ASK.format(ds="er_asked"))
    assert before.value.code == grpc.StatusCode.PERMISSION_DENIED
    submitted = run_fedgate(
        "request",
        "submit",
        "--profile",
        analyst,
        "--dataset",
        "jiangsu.er_asked",
        "--column",
        "industry_section=group_by",
        "--column",
        "revenue=aggregate,filter",
        "--purpose",
        "regional industry report",
        "--expires",
        "2031-01-01",
    )
    assert submitted.returncode == 0, submitted.stderr
    request_id = submitted.stdout.splitlines()[2].split()[0]
    ops = str(federation.fed.operator_profile("jiangsu"))
    listed = run_fedgate("request", "list", "--profile", ops, "--state", "pending")
    assert request_id in listed.stdout and "zhang.min@anhui" in listed.stdout
    status = run_fedgate(
        "request", "status", request_id, "--owner", "jiangsu", "--profile", analyst
    )
    assert "pending" in status.stdout
    approved = run_fedgate(  # narrowed: revenue may be aggregated but not filtered on
        "request",
        "approve",
        request_id,
        "--profile",
        ops,
        "--note",
        "ok for the report",
        "--column",
        "industry_section=group_by",
        "--column",
        "revenue=aggregate",
        "--expires",
        "2030-06-30",
    )
    assert approved.returncode == 0, approved.stderr
    with federation.client("zhang.min@anhui") as c:
        state = c.access_request_status("jiangsu", request_id)
        assert state.state == "approved" and state.grant_id
        with pytest.raises(ClientError) as narrowed:
            c.query(
                "SELECT COUNT(*) FROM jiangsu.er_asked WHERE revenue > 5",
                purpose="regional industry report",
            )
        assert narrowed.value.code == grpc.StatusCode.PERMISSION_DENIED
        result = c.query(ASK.format(ds="er_asked"), purpose="regional industry report")
    assert result.table.num_rows > 0 and result.contributors == ["jiangsu"]
    kinds = _audit_kinds(federation, "jiangsu", request_id)
    assert kinds == ["access.submitted", "grant.written", "access.approved"]
    assert _audit_kinds(federation, "anhui", request_id) == ["access.forwarded"]


def test_a_train_request_is_approved_with_its_tasks_by_the_cli(
    federation: RunningFederation,
) -> None:
    """Review (2026-12-05): an approved train request wrote a grant with no tasks, which
    could never train; `request approve` now names them (--train-tasks, --max-rounds), and
    approving without them is refused naming the flag."""
    federation.register_copy("jiangsu", "enterprise_registry", "er_train_asked")
    analyst = str(federation.fed.profile_path("zhang.min@anhui"))
    submitted = run_fedgate(
        "request", "submit", "--profile", analyst, "--dataset", "jiangsu.er_train_asked",
        "--column", "employees=aggregate", "--column", "revenue=aggregate",
        "--ops", "train", "--purpose", "revenue model",
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr
    request_id = submitted.stdout.splitlines()[2].split()[0]
    ops = str(federation.fed.operator_profile("jiangsu"))
    bare = run_fedgate("request", "approve", request_id, "--profile", ops)
    assert bare.returncode == 1 and "INVALID_ARGUMENT" in bare.stderr, bare.stderr
    assert "--train-tasks" in bare.stderr
    approved = run_fedgate(
        "request", "approve", request_id, "--profile", ops, "--train-tasks", "logreg,linreg",
        "--max-rounds", "12", "--dp-epsilon", "1", "--dp-budget", "10",
    )  # fmt: skip
    assert approved.returncode == 0, approved.stderr
    with federation.client("ops@jiangsu") as c:
        (grant,) = c.list_grants("er_train_asked")
    assert list(grant.operations) == ["train"] and list(grant.train_tasks) == ["logreg", "linreg"]
    assert grant.max_rounds == 12


def test_access_request_denied_keeps_the_query_refused(federation: RunningFederation) -> None:
    federation.register_copy("jiangsu", "enterprise_registry", "er_denied")
    with federation.client("zhang.min@anhui") as c:
        from gateway.access import AccessRequest, ColumnControls

        req = c.submit_access_request(
            AccessRequest(
                owner="jiangsu",
                dataset="er_denied",
                purpose="curiosity",
                columns=(ColumnControls(column="enterprise_name", controls=("raw",)),),
            )
        )
    deny = run_fedgate(
        "request",
        "deny",
        req.id,
        "--profile",
        str(federation.fed.operator_profile("jiangsu")),
        "--note",
        "names are L2",
    )
    assert deny.returncode == 0
    with federation.client("zhang.min@anhui") as c:
        state = c.access_request_status("jiangsu", req.id)
        assert state.state == "denied" and state.decision_note == "names are L2"
        with pytest.raises(ClientError) as info:
            c.query(ASK.format(ds="er_denied"))
    assert info.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert _audit_kinds(federation, "jiangsu", req.id) == ["access.submitted", "access.denied"]
    with federation.client("li.wei@shanghai") as other, pytest.raises(ClientError) as peek:
        other.access_request_status("jiangsu", req.id)
    assert peek.value.code == grpc.StatusCode.PERMISSION_DENIED
    _a_node_vouches_only_for_its_own_users(federation, req.id)


def _a_node_vouches_only_for_its_own_users(federation: RunningFederation, request_id: str) -> None:
    """A member node asking the owner directly: for a user of another organisation it is
    refused; naming the same user id under its own organisation does not read the request
    either (a request is matched on user and organisation)."""
    from gateway.rpc.v1 import gateway_pb2, peer_pb2, peer_pb2_grpc

    own_org, other_org = federation.fed.node("shanghai").org, federation.fed.node("anhui").org
    with federation.peer_channel("shanghai", "jiangsu") as ch:
        stub = peer_pb2_grpc.PeerStub(ch)
        for org, words in ((other_org, "may only vouch for users of"), (own_org, "is not yours")):
            forwarded = peer_pb2.ForwardedStatusRequest(
                request=gateway_pb2.AccessRequestStatusRequest(owner="jiangsu", id=request_id),
            )
            forwarded.requester.role, forwarded.requester.org = "analyst", org
            forwarded.requester.id = "zhang.min@anhui"
            with pytest.raises(grpc.RpcError) as info:
                stub.ForwardAccessRequestStatus(forwarded, timeout=10)
            assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert words in (info.value.details() or "")


def _big_file(federation: RunningFederation, rows: int = 5_000_000) -> pa.Table:
    rng = np.random.default_rng(7)
    table = pa.table(
        {
            "k": pa.array(rng.integers(0, 2_000, rows), pa.int64()),
            "x": pa.array(rng.normal(100, 15, rows)),
        }
    )
    pq.write_table(table, federation.fed.data_dir("zhejiang") / "big.parquet")
    return table


def _publish(federation: RunningFederation, name: str) -> None:
    root = federation.fed.data_dir("zhejiang")
    (root / f"{name}.parquet").hardlink_to(root / "big.parquet")
    desc = descriptor.DatasetDescriptor(
        name,
        "Big",
        "",
        "test",
        "L1",
        "static",
        f"{name}.parquet",
        "parquet",
        (descriptor.ColumnSpec("k", "int64"), descriptor.ColumnSpec("x", "float64")),
    )
    (root / f"{name}.toml").write_text(descriptor.dumps(desc))
    with federation.client("ops@zhejiang") as ops:
        ops.register(root / f"{name}.toml")


def test_revocation_during_an_in_flight_query_stops_the_release(
    federation: RunningFederation,
) -> None:
    """The owner checked the grant when the query arrived; the grant is revoked while the
    owner loads and aggregates 5 M rows; the release-time re-check stops the release.

    Where the revocation lands depends on timing, so each attempt uses a fresh dataset
    (loaded on first use) and a different delay, until one lands in flight. Every
    attempt must be consistent: a release spent one use, a refusal spent none.
    """
    _big_file(federation)
    outcomes = []
    delay = 0.1
    for attempt in range(12):  # adapt the delay: earlier if it was released, later if
        # the grant was already revoked when the request arrived
        name = f"big_inflight_{attempt}"
        _publish(federation, name)
        grant = federation.grant(
            "zhejiang",
            dataset=name,
            grantee_kind="user",
            grantee="li.wei@shanghai",
            min_group_size=1,
            columns={"k": "group_by", "x": "aggregate"},
        )
        outcome: dict[str, object] = {}

        def ask(name: str = name, outcome: dict = outcome) -> None:
            with federation.client("li.wei@shanghai") as c:
                try:
                    outcome["result"] = c.query(
                        f"SELECT k, VAR_SAMP(x), AVG(x) FROM zhejiang.{name} GROUP BY k "
                        "ORDER BY k LIMIT 3",
                        timeout=120,
                    )
                except ClientError as exc:
                    outcome["error"] = exc

        thread = threading.Thread(target=ask)
        thread.start()
        time.sleep(delay)
        with federation.client("ops@zhejiang") as ops:
            ops.revoke_grant(grant.id)
        thread.join(timeout=120)
        with federation.client("ops@zhejiang") as ops:
            (g,) = ops.list_grants(name)
        error = outcome.get("error")
        if error is None:
            assert g.uses == 1
            outcomes.append("released before the revocation")
            delay *= 0.6
            continue
        assert isinstance(error, ClientError) and g.uses == 0
        assert error.code == grpc.StatusCode.PERMISSION_DENIED and "is revoked" in str(error)
        if "(checked again at release)" in str(error):
            outcomes.append("stopped in flight")
            break
        outcomes.append("refused on arrival")
        delay *= 1.5
    assert outcomes[-1] == "stopped in flight", outcomes


def test_disclosure_report_lists_grants_and_usage_without_persons(
    federation: RunningFederation, tmp_path
) -> None:
    with federation.client("li.wei@shanghai") as c:
        c.query("SELECT city, COUNT(*) FROM wuhu.enterprise_registry GROUP BY city")
        with pytest.raises(ClientError):
            c.query("SELECT revenue FROM wuhu.enterprise_registry")
    profile = str(federation.fed.profile_path("zhang.min@anhui"))
    md = run_fedgate("disclosure", "--node", "wuhu", "--format", "md", "--profile", profile)
    assert md.returncode == 0, md.stderr
    assert "Wuhu Data Resources Bureau" in md.stdout and "enterprise_registry" in md.stdout
    as_json = json.loads(
        run_fedgate("disclosure", "--node", "wuhu", "--format", "json", "--profile", profile).stdout
    )
    usage = {(u["dataset"], u["grantee_org"]): u for u in as_json["usage"]}
    shanghai = usage[("enterprise_registry", federation.fed.node("shanghai").org)]
    assert int(shanghai["releases"]) >= 1 and int(shanghai["refusals"]) >= 1
    grants = as_json["grants"]
    assert any(g["dataset"] == "social_insurance" and g["purpose"] for g in grants)
    text = json.dumps(as_json)
    assert "li.wei" not in text and "zhang.min" not in text  # no persons
    html = run_fedgate(
        "disclosure",
        "--node",
        "wuhu",
        "--format",
        "html",
        "--profile",
        profile,
        "--out",
        str(tmp_path / "r.html"),
    )
    assert html.returncode == 0 and "<table>" in (tmp_path / "r.html").read_text()


def test_an_exact_grant_is_written_by_the_cli_and_disclosed_as_such(
    federation: RunningFederation,
) -> None:
    """The owner's opt-out of the L2 noise (``grant add --exact``) is public: the
    disclosure report marks that grant, and only it, as answered exactly."""
    federation.register_copy("hefei", "enterprise_registry", "er_disclosed")
    ops = str(federation.fed.operator_profile("hefei"))
    org = federation.fed.node("shanghai").org
    for exact in ((), ("--exact",)):
        written = run_fedgate(
            *("grant", "add", "--profile", ops, "--dataset", "er_disclosed", "--org", org),
            *("--column", "city=group_by", "--min-group-size", "5", *exact),
        )
        assert written.returncode == 0, written.stderr
    assert "exact (no L2 noise)" in written.stdout
    profile = str(federation.fed.profile_path("zhang.min@anhui"))
    shown = run_fedgate("disclosure", "--node", "hefei", "--format", "json", "--profile", profile)
    grants = [g for g in json.loads(shown.stdout)["grants"] if g["dataset"] == "er_disclosed"]
    assert sorted(bool(g.get("exact")) for g in grants) == [False, True]
    md = run_fedgate("disclosure", "--node", "hefei", "--format", "md", "--profile", profile)
    assert "opted out: exact answers" in md.stdout


def test_a_grant_to_a_node_outside_the_federation_is_refused(
    federation: RunningFederation,
) -> None:
    """``grant add --node`` names a member, as query, psi and train refuse an unknown node
    (a typo's grant, 'nanjing', was written and matched no node)."""
    ops = str(federation.fed.operator_profile("hefei"))
    before = len(federation.audit("hefei", "grant.written"))
    add = ("grant", "add", "--profile", ops, "--dataset", "enterprise_registry")
    refused = run_fedgate(*add, "--node", "nanjing", "--column", "city=group_by")
    assert refused.returncode == 1, refused.stderr
    assert refused.stderr.strip() == "fedgate: NOT_FOUND: no member 'nanjing' in the federation"
    written = run_fedgate(*add, "--node", "wuhu", "--column", "city=group_by")
    assert written.returncode == 0, written.stderr
    assert len(federation.audit("hefei", "grant.written")) == before + 1  # wuhu's alone


def test_a_reversed_disclosure_period_is_refused(federation: RunningFederation) -> None:
    """``--since`` after ``--until`` was answered with a report of no usage; the node
    asked refuses it, its own report or a member's."""
    profile = str(federation.fed.profile_path("zhang.min@anhui"))
    period = ("--since", "2027-01-01", "--until", "2026-01-01")
    for node in ((), ("--node", "wuhu")):
        shown = run_fedgate("disclosure", *node, *period, "--profile", profile)
        assert shown.returncode == 1, shown.stdout
        assert shown.stderr.strip() == (
            "fedgate: INVALID_ARGUMENT: --since 2027-01-01T00:00:00Z is after "
            "--until 2026-01-01T00:00:00Z"
        )
