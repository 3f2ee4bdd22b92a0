"""Datasets and the federated catalog, through real nodes."""

from __future__ import annotations

import dataclasses
import shutil
import time
import urllib.request
from pathlib import Path

import grpc
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gateway import descriptor
from gateway.client import ClientError
from tests.conftest import RunningFederation

pytestmark = pytest.mark.integration


def _copy_dataset(federation: RunningFederation, node: str, name: str, new_name: str, **changes):  # type: ignore[no-untyped-def]
    return federation.copy_dataset(node, name, new_name, **changes)


def test_registration_records_a_quality_report(federation: RunningFederation) -> None:
    with federation.client("ops@jiangsu") as c:
        resp = c.catalog("enterprise_registry")
    (d,) = resp.datasets
    table = pq.read_table(federation.fed.data_dir("jiangsu") / "enterprise_registry.parquet")
    assert d.rows == table.num_rows == d.quality.rows
    quality = {q.name: q for q in d.quality.columns}
    emp = table.column("employees")
    assert quality["employees"].min == pa.compute.min(emp).as_py()
    assert quality["employees"].max == pa.compute.max(emp).as_py()
    revenue = table.column("revenue")
    assert quality["revenue"].null_rate == pytest.approx(revenue.null_count / table.num_rows)
    assert not quality["city"].HasField("min")
    assert d.level == "L2" and d.department and d.registered_at and d.updated_at


def test_malformed_file_is_refused_with_reason(federation: RunningFederation) -> None:
    path, data = _copy_dataset(federation, "zhejiang", "air_quality", "broken_air")
    data.write_bytes(b"PAR1 this is not parquet at all" * 10)
    with federation.client("ops@zhejiang") as c:
        with pytest.raises(ClientError) as info:
            c.register(path)
        assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert "not a readable Parquet file" in str(info.value)
        assert not c.catalog("broken_air").datasets
    assert "INVALID_ARGUMENT" in federation.node_log("zhejiang")


def test_schema_mismatch_is_refused_naming_the_column(federation: RunningFederation) -> None:
    src = next(p for p in federation.written["hefei"] if p.stem == "air_quality")
    desc = descriptor.load(src)
    cols = tuple(
        dataclasses.replace(c, type="int64") if c.name == "station_id" else c for c in desc.columns
    )
    path, _ = _copy_dataset(federation, "hefei", "air_quality", "air_wrong_type", columns=cols)
    missing = (*desc.columns, descriptor.ColumnSpec("so2", "float64"))
    path2, _ = _copy_dataset(federation, "hefei", "air_quality", "air_missing_col", columns=missing)
    with federation.client("ops@hefei") as c:
        with pytest.raises(ClientError) as info:
            c.register(path)
        assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert "'station_id' is declared int64" in str(info.value)
        with pytest.raises(ClientError) as info:
            c.register(path2)
        assert "declared column 'so2' is not in the file" in str(info.value)


def test_csv_with_a_bad_value_is_refused(federation: RunningFederation) -> None:
    root = federation.fed.data_dir("wuhu")
    (root / "stations.csv").write_text("station_id,pm25\nWH01,12.5\nWH02,twelve\n")
    desc = descriptor.DatasetDescriptor(
        name="stations",
        title="Stations",
        description="",
        department="Wuhu EPB",
        level="L1",
        update_frequency="daily",
        path="stations.csv",
        format="csv",
        columns=(
            descriptor.ColumnSpec("station_id", "string"),
            descriptor.ColumnSpec("pm25", "float64"),
        ),
    )
    (root / "stations.toml").write_text(descriptor.dumps(desc))
    with federation.client("ops@wuhu") as c:
        with pytest.raises(ClientError) as info:
            c.register(root / "stations.toml")
        assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert "twelve" in str(info.value)
        (root / "stations.csv").write_text("station_id,pm25\nWH01,12.5\nWH02,\n")
        ok = c.register(root / "stations.toml").dataset
    assert ok.rows == 2 and ok.quality.columns[1].null_rate == pytest.approx(0.5)


def test_path_outside_dataset_roots_is_refused(
    federation: RunningFederation, tmp_path: Path
) -> None:
    src = next(p for p in federation.written["anhui"] if p.stem == "air_quality")
    desc = descriptor.load(src)
    outside = tmp_path / "air.parquet"
    shutil.copy(desc.path, outside)
    (tmp_path / "air.toml").write_text(
        descriptor.dumps(dataclasses.replace(desc, name="air_outside", path=str(outside)))
    )
    with federation.client("ops@anhui") as c, pytest.raises(ClientError) as info:
        c.register(tmp_path / "air.toml")
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "outside the node's dataset roots" in str(info.value)


def test_l4_dataset_is_listed_only_to_the_nodes_own_operators(
    federation: RunningFederation,
) -> None:
    path, _ = _copy_dataset(federation, "shanghai", "social_insurance", "core_registry", level="L4")
    with federation.client("ops@shanghai") as ops:
        assert ops.register(path).dataset.level == "L4"
        assert [d.name for d in ops.catalog("core_registry").datasets] == ["core_registry"]
    with federation.client("li.wei@shanghai") as analyst:
        assert not analyst.catalog("core_registry").datasets
        fed = analyst.federated_catalog("core_registry")
        assert all(not m.datasets for m in fed.members)
    with federation.client("ops@miit", node="shanghai") as foreign_ops:
        assert not foreign_ops.catalog("core_registry").datasets


def test_federated_catalog_lists_every_member(federation: RunningFederation) -> None:
    with federation.client("zhang.min@anhui") as c:
        resp = c.federated_catalog()
    assert resp.home_node == "anhui"
    members = {m.node_id: m for m in resp.members}
    assert set(members) == {n.id for n in federation.fed.nodes}
    assert all(m.reachable for m in members.values())
    assert members["hefei"].parent == "anhui" and members["hefei"].level == "city"
    for node_id, descriptors in federation.written.items():
        names = {d.name for d in members[node_id].datasets}
        assert {p.stem for p in descriptors} <= names
    registry = next(d for d in members["zhejiang"].datasets if d.name == "enterprise_registry")
    table = pq.read_table(federation.fed.data_dir("zhejiang") / "enterprise_registry.parquet")
    assert registry.rows == table.num_rows
    assert [c.name for c in registry.columns] == table.schema.names


def test_unreachable_member_is_marked_and_state_survives_restart(
    federation: RunningFederation,
) -> None:
    with federation.client("ops@wuhu") as c:
        before = sorted(d.name for d in c.catalog().datasets)
    proc = federation.procs["wuhu"]
    proc.process.terminate()
    assert proc.process.wait(timeout=15) == 0  # graceful shutdown on SIGTERM
    assert "stopped node=wuhu" in federation.node_log("wuhu")
    try:
        with federation.client("li.wei@shanghai") as c:
            t0 = time.monotonic()
            resp = c.federated_catalog(member_timeout=5)  # 6 live nodes on a loaded machine
            elapsed = time.monotonic() - t0
        members = {m.node_id: m for m in resp.members}
        assert not members["wuhu"].reachable and members["wuhu"].error
        assert all(m.reachable for k, m in members.items() if k != "wuhu")
        assert elapsed < 15
    finally:
        federation.start("wuhu")
    with federation.client("ops@wuhu") as c:
        assert sorted(d.name for d in c.catalog().datasets) == before


def test_metrics_endpoint_counts_requests(federation: RunningFederation) -> None:
    with federation.client("li.wei@shanghai") as c:
        c.whoami()
        c.federated_catalog()
    node = federation.fed.node("shanghai")
    body = (
        urllib.request.urlopen(f"http://{node.metrics_listen}/metrics", timeout=5).read().decode()
    )
    assert 'fedgate_requests_total{code="OK",method="/fedgate.v1.Gateway/WhoAmI"}' in body
    assert "fedgate_request_seconds_bucket" in body
    assert 'fedgate_peer_up{peer="miit"} 1.0' in body
