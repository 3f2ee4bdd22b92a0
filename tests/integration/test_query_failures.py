"""Owners that are down, partial answers, dry runs and the query command line."""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path

import grpc
import pyarrow.parquet as pq
import pytest

from gateway.client import ClientError
from gateway.receipts import Receipt
from tests.conftest import RunningFederation, run_fedgate

pytestmark = pytest.mark.integration

COUNT_BY_CITY = "SELECT city, COUNT(*) AS n FROM enterprise_registry GROUP BY city"


def test_unreachable_owner_fails_the_query_naming_it(federation: RunningFederation) -> None:
    with federation.stopped("jiangsu"):
        with federation.client("li.wei@shanghai") as c:
            with pytest.raises(ClientError) as info:
                c.query(COUNT_BY_CITY)
            assert info.value.code == grpc.StatusCode.UNAVAILABLE
            assert "owner jiangsu is unavailable" in str(info.value)
            partial = c.query(COUNT_BY_CITY, allow_partial=True)
        assert partial.missing == ("jiangsu",)
        assert "jiangsu" not in partial.contributors and "zhejiang" in partial.contributors
        cities = {r["city"] for r in partial.table.to_pylist()}
        assert "Nanjing" not in cities and "Hangzhou" in cities
    with federation.client("li.wei@shanghai") as c:
        assert "Nanjing" in {r["city"] for r in c.query(COUNT_BY_CITY).table.to_pylist()}


def test_explain_names_owners_grants_roles_and_refusals(federation: RunningFederation) -> None:
    sql = "SELECT city, SUM(revenue) FROM enterprise_registry WHERE employees > 5 GROUP BY city"
    with federation.client("li.wei@shanghai") as c:
        resp = c.explain(sql)
        bad = c.explain("SELECT SUM(revenue) FROM enterprise_registry WHERE revenue > 1")
    owners = {o.node_id: o for o in resp.owners}
    assert set(owners) == {"shanghai", "jiangsu", "zhejiang", "anhui", "hefei", "wuhu"}
    info = owners["hefei"].explanation
    assert {c.column: list(c.roles) for c in info.columns} == {
        "city": ["group_by"],
        "employees": ["filter"],
        "revenue": ["aggregate"],
    }
    assert info.min_group_size == 5 and info.level == "L2" and owners["hefei"].via == "anhui"
    assert not resp.arrow_ipc and resp.epsilon_spent == 0
    assert len(bad.owners) == 6 and {o.node_id for o in bad.owners} == set(owners)
    assert all(not o.ok and "may not be used as filter" in o.error for o in bad.owners)


def test_receipts_come_back_signed_and_verify(
    federation: RunningFederation, tmp_path: Path
) -> None:
    with federation.client("li.wei@shanghai") as c:
        result = c.query(COUNT_BY_CITY)
    assert set(result.receipts) == set(result.contributors)
    receipt = Receipt.from_json(result.receipts["wuhu"])
    assert receipt.body["request_id"] == result.request_id
    assert receipt.body["requester"] == "analyst:li.wei@shanghai"
    path = tmp_path / "r.json"
    path.write_text(result.receipts["wuhu"])
    ok = run_fedgate("receipt", "verify", str(path), "--ca", str(federation.fed.ca_cert))
    assert ok.returncode == 0 and "signed by node wuhu" in ok.stdout
    forged = json.loads(result.receipts["wuhu"])
    forged["body"]["groups_released"] += 1
    path.write_text(json.dumps(forged))
    bad = run_fedgate("receipt", "verify", str(path), "--ca", str(federation.fed.ca_cert))
    assert bad.returncode == 2 and "does not verify" in bad.stderr


def test_query_command_formats(federation: RunningFederation, tmp_path: Path) -> None:
    profile = str(federation.fed.profile_path("li.wei@shanghai"))
    sql = (
        "SELECT industry_section, COUNT(*) AS n FROM enterprise_registry "
        "GROUP BY industry_section ORDER BY industry_section"
    )
    table = run_fedgate("query", sql, "--profile", profile)
    assert table.returncode == 0, table.stderr
    assert "industry_section" in table.stdout and "withheld at source" in table.stderr
    as_csv = run_fedgate("query", sql, "--profile", profile, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    as_json = json.loads(run_fedgate("query", sql, "--profile", profile, "--format", "json").stdout)
    assert [r["industry_section"] for r in rows] == [r["industry_section"] for r in as_json["rows"]]
    assert sorted(as_json["meta"]["owners"]) == sorted(
        ["shanghai", "jiangsu", "zhejiang", "anhui", "hefei", "wuhu"]
    )
    out = tmp_path / "r.parquet"
    assert run_fedgate("query", sql, "--profile", profile, "--out", str(out)).returncode == 0
    assert pq.read_table(out).num_rows == len(rows)
    explain = run_fedgate("query", sql, "--profile", profile, "--explain")
    assert explain.returncode == 0 and "allowed" in explain.stdout
    refused = run_fedgate("query", "SELECT revenue FROM enterprise_registry", "--profile", profile)
    assert refused.returncode == 1 and "PERMISSION_DENIED" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_grant_commands(federation: RunningFederation) -> None:
    profile = str(federation.fed.operator_profile("hefei"))
    add = run_fedgate(
        "grant",
        "add",
        "--profile",
        profile,
        "--dataset",
        "air_quality",
        "--user",
        "zhang.min@anhui",
        "--user-org",
        federation.fed.node("anhui").org,
        "--column",
        "city=group_by",
        "--column",
        "pm25=aggregate",
        "--min-group-size",
        "1",
        "--expires",
        "2030-01-01",
    )
    assert add.returncode == 0, add.stderr
    grant_id = add.stdout.split("\n")[2].split()[0]
    listed = run_fedgate("grant", "list", "--profile", profile, "--dataset", "air_quality")
    assert grant_id in listed.stdout and "active" in listed.stdout
    revoked = run_fedgate("grant", "revoke", "--profile", profile, grant_id)
    assert revoked.returncode == 0 and "revoked" in revoked.stdout
    again = run_fedgate("grant", "revoke", "--profile", profile, grant_id)
    assert again.returncode == 1 and "already revoked" in again.stderr


def test_home_keeps_the_receipts_operators_can_list(
    federation: RunningFederation, tmp_path: Path
) -> None:
    with federation.client("li.wei@shanghai") as c:
        result = c.query(COUNT_BY_CITY)
    ops = str(federation.fed.operator_profile("shanghai"))
    listed = run_fedgate(
        "receipt", "list", "--profile", ops, "--request", result.request_id, "--out", str(tmp_path)
    )
    assert listed.returncode == 0, listed.stderr
    files = sorted(tmp_path.glob("*.json"))
    assert len(files) == len(result.contributors)
    for f in files:
        ok = run_fedgate("receipt", "verify", str(f), "--ca", str(federation.fed.ca_cert))
        assert ok.returncode == 0
    missing = run_fedgate("receipt", "list", "--profile", ops, "--request", "nope")
    assert missing.returncode == 1 and "NOT_FOUND" in missing.stderr


def test_city_down_behind_the_relay(federation: RunningFederation) -> None:
    """Hefei, reached through Anhui's vertical link, is down: the relay reports it by
    name, and a partial answer says exactly who is missing and through whom."""
    profile = str(federation.fed.profile_path("li.wei@shanghai"))
    sql = "SELECT city, COUNT(*) AS n FROM anhui.enterprise_registry GROUP BY city"
    with federation.stopped("hefei"):
        with federation.client("li.wei@shanghai") as c:
            with pytest.raises(ClientError) as info:
                c.query(sql)
            assert info.value.code == grpc.StatusCode.UNAVAILABLE
            assert "owner hefei is unavailable" in str(info.value)
            partial = c.query(sql, allow_partial=True)
        assert partial.missing == ("hefei",)
        (hefei,) = [o for o in partial.owners if o.node_id == "hefei"]
        assert not hefei.ok and hefei.via == "anhui" and hefei.error_code == "UNAVAILABLE"
        cities = {r["city"] for r in partial.table.to_pylist()}
        assert "Hefei" not in cities and "Wuhu" in cities
        cli = run_fedgate("query", sql, "--profile", profile, "--allow-partial")
        assert cli.returncode == 0, cli.stderr
        assert "MISSING owners (partial result): hefei" in cli.stderr
        # and why, each owner on a line of its own (it was the ids alone)
        assert f"  hefei (via anhui): UNAVAILABLE: {hefei.error}\n" in cli.stderr
        as_json = run_fedgate(
            "query", sql, "--profile", profile, "--allow-partial", "--format", "json"
        )
        meta = json.loads(as_json.stdout)["meta"]
        assert meta["missing"] == ["hefei"]  # its shape unchanged
        assert meta["missing_reasons"] == {
            "hefei": {"code": "UNAVAILABLE", "reason": hefei.error, "via": "anhui"}
        }
        refused = run_fedgate("query", sql, "--profile", profile)
        assert refused.returncode == 1 and "UNAVAILABLE" in refused.stderr
        assert "hefei" in refused.stderr and "Traceback" not in refused.stderr


def test_query_command_nodes_csv_out_and_purpose(
    federation: RunningFederation, tmp_path: Path
) -> None:
    profile = str(federation.fed.profile_path("li.wei@shanghai"))
    out = tmp_path / "r.csv"
    r = run_fedgate(
        "query",
        COUNT_BY_CITY,
        "--profile",
        profile,
        "--nodes",
        "jiangsu,zhejiang",
        "--out",
        str(out),
    )
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(out.open()))
    assert rows and {"city", "n"} == set(rows[0])
    with federation.client("li.wei@shanghai") as c:
        want = c.query(COUNT_BY_CITY, nodes=["jiangsu", "zhejiang"])
    assert sorted(want.contributors) == ["jiangsu", "zhejiang"]
    assert sorted((row["city"], int(row["n"])) for row in rows) == sorted(
        (row["city"], row["n"]) for row in want.table.to_pylist()
    )
    # L3 data is granted for one purpose only: without it the owners refuse, with it
    # they answer (and their receipts record the purpose).
    sql = "SELECT insurance_type, COUNT(*) AS n FROM social_insurance GROUP BY insurance_type"
    refused = run_fedgate("query", sql, "--profile", profile)
    assert refused.returncode == 1 and "purpose" in refused.stderr
    answered = run_fedgate(
        "query",
        sql,
        "--profile",
        profile,
        "--purpose",
        "labour market statistics",
        "--format",
        "json",
    )
    assert answered.returncode == 0, answered.stderr
    assert json.loads(answered.stdout)["meta"]["epsilon_spent"] > 0


def test_a_spent_deadline_releases_nothing(federation: RunningFederation) -> None:
    """The client's deadline travels to the home node and on to every owner: a query
    whose time runs out is answered DEADLINE_EXCEEDED and no owner spends or releases."""
    before = federation.releases()
    sql = "SELECT city, high_tech, COUNT(*) AS n FROM enterprise_registry GROUP BY city, high_tech"
    with federation.client("li.wei@shanghai") as c:
        with pytest.raises(ClientError) as info:
            c.query(sql, timeout=0.03)
        assert info.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
        time.sleep(1.0)  # owners that were still working have finished by now
        assert federation.releases() == before
        assert c.query(sql).table.num_rows > 0  # with time enough, the same query runs
