from __future__ import annotations

import datetime as dt
import hashlib
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from gateway import descriptor
from gateway.credit_code import is_valid_credit_code
from gateway.demo.sample_data import NODES, REGIONAL_NODES, generate
from gateway.errors import InvalidArgument

SCALE = 0.1
ARROW = {
    "string": pa.string(),
    "int64": pa.int64(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
    "date": pa.date32(),
}
DIVISION_PREFIXES = {
    "shanghai": ("3101",),
    "jiangsu": ("3201", "3202", "3204", "3205", "3206"),
    "zhejiang": ("3301", "3302", "3303", "3304", "3306"),
    "anhui": ("3403", "3405", "3408", "3411", "3418"),
    "hefei": ("3401",),
    "wuhu": ("3402",),
}


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[Path]]]:
    root = tmp_path_factory.mktemp("sample")
    return root, generate(root, scale=SCALE)


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _table(root: Path, node: str, dataset: str) -> pa.Table:
    return pq.read_table(root / node / f"{dataset}.parquet")


def _codes(root: Path, node: str) -> set[str]:
    return set(_table(root, node, "enterprise_registry")["credit_code"].to_pylist())


def test_layout_and_return_value(out: tuple[Path, dict[str, list[Path]]]) -> None:
    root, written = out
    assert list(written) == list(NODES)
    assert [p.name for p in written["miit"]] == ["industry_enterprises.toml"]
    for node in REGIONAL_NODES:
        assert [p.name for p in written[node]] == [
            "enterprise_registry.toml",
            "social_insurance.toml",
            "air_quality.toml",
        ]
    for paths in written.values():
        for toml in paths:
            assert toml.parent.parent == root
            assert toml.with_suffix(".parquet").is_file()


def test_files_match_their_descriptors(out: tuple[Path, dict[str, list[Path]]]) -> None:
    root, written = out
    for paths in written.values():
        for toml in paths:
            text = toml.read_text(encoding="utf-8")
            assert f'path = "{toml.stem}.parquet"' in text  # relative on disk
            desc = descriptor.load(toml)
            assert desc.format == "parquet"
            assert desc.title and desc.description and desc.department
            assert desc.update_frequency in descriptor.FREQUENCIES
            schema = pq.read_schema(desc.path)
            assert schema.names == [c.name for c in desc.columns]
            table = pq.read_table(desc.path)
            for col in desc.columns:
                assert schema.field(col.name).type == ARROW[col.type], (toml, col.name)
                if col.lower is not None or col.upper is not None:
                    assert col.type in ("int64", "float64")
                    values = table[col.name]
                    assert pc.min(values).as_py() >= col.lower, (toml, col.name)
                    assert pc.max(values).as_py() <= col.upper, (toml, col.name)
                if col.type in ("int64", "float64"):
                    assert col.lower is not None and col.upper is not None, (toml, col.name)


def test_levels(out: tuple[Path, dict[str, list[Path]]]) -> None:
    root, _ = out
    reg = descriptor.load(root / "shanghai" / "enterprise_registry.toml")
    assert reg.level == "L2"
    assert reg.column_level("credit_code") == "L2"
    assert reg.column_level("enterprise_name") == "L2"
    si = descriptor.load(root / "jiangsu" / "social_insurance.toml")
    assert si.level == "L3"
    assert si.column_level("person_id") == "L4"
    assert si.column_level("monthly_wage") == "L3"
    assert descriptor.load(root / "anhui" / "air_quality.toml").level == "L1"
    miit = descriptor.load(root / "miit" / "industry_enterprises.toml")
    assert miit.level == "L3"
    assert miit.column_level("credit_code") == "L3"
    assert miit.department == "Ministry of Industry and Information Technology"


def test_row_counts(out: tuple[Path, dict[str, list[Path]]]) -> None:
    root, _ = out
    for node in REGIONAL_NODES:
        big = node in ("shanghai", "jiangsu", "zhejiang")
        reg = _table(root, node, "enterprise_registry")
        si = _table(root, node, "social_insurance")
        air = _table(root, node, "air_quality")
        assert reg.num_rows == round((5000 if big else 2000) * SCALE)
        assert si.num_rows == round((20000 if big else 8000) * SCALE)
        stations = len(set(air["station_id"].to_pylist()))
        assert 2 <= stations <= 4
        assert air.num_rows == stations * round(365 * SCALE)


def test_row_counts_scale(tmp_path: Path) -> None:
    written = generate(tmp_path, scale=0.05, nodes=["wuhu"])
    assert list(written) == ["wuhu"]
    assert _table(tmp_path, "wuhu", "enterprise_registry").num_rows == 100
    assert _table(tmp_path, "wuhu", "social_insurance").num_rows == 400
    air = _table(tmp_path, "wuhu", "air_quality")
    assert air.num_rows == 2 * 30  # never fewer than 30 days


def test_registry_contents(out: tuple[Path, dict[str, list[Path]]]) -> None:
    root, _ = out
    nulls = {"revenue": 0, "registered_capital": 0}
    for node in REGIONAL_NODES:
        t = _table(root, node, "enterprise_registry")
        codes = t["credit_code"].to_pylist()
        assert all(is_valid_credit_code(c) for c in codes)
        assert len(set(codes)) == len(codes)
        divisions = t["division_code"].to_pylist()
        assert all(d.startswith(DIVISION_PREFIXES[node]) for d in divisions), node
        assert [c[2:8] for c in codes] == divisions
        assert t["industry_section"].to_pylist() == [c[0] for c in t["industry_code"].to_pylist()]
        assert pc.min(t["employees"]).as_py() >= 1
        years = t["founding_year"]
        assert pc.min(years).as_py() >= 1980 and pc.max(years).as_py() <= 2025
        names = t["enterprise_name"].to_pylist()
        assert len(set(names)) == len(names)
        assert all(n.endswith("Co., Ltd.") for n in names)
        for col in nulls:
            nulls[col] += t[col].null_count
        assert 0 < pc.sum(t["high_tech"].cast(pa.int64())).as_py() < t.num_rows
    assert all(n > 0 for n in nulls.values()), nulls


def test_registry_schema_identical_everywhere(out: tuple[Path, dict[str, list[Path]]]) -> None:
    root, _ = out
    schemas = {pq.read_schema(root / n / "enterprise_registry.parquet") for n in REGIONAL_NODES}
    assert len(schemas) == 1


def test_social_insurance_contents(out: tuple[Path, dict[str, list[Path]]]) -> None:
    root, _ = out
    wages = {}
    for node in REGIONAL_NODES:
        t = _table(root, node, "social_insurance")
        ids = t["person_id"].to_pylist()
        assert all(len(i) == 16 and int(i, 16) >= 0 for i in ids)
        assert set(t["gender"].to_pylist()) == {"F", "M"}
        assert set(t["insurance_type"].to_pylist()) <= {
            "pension",
            "medical",
            "unemployment",
            "work_injury",
            "maternity",
        }
        assert set(t["employer_credit_code"].to_pylist()) <= _codes(root, node)
        wages[node] = float(np.median(t["monthly_wage"].to_numpy()))
    assert max(wages, key=wages.__getitem__) == "shanghai"


def test_air_quality_dates_and_seasons(out: tuple[Path, dict[str, list[Path]]], tmp_path: Path):
    root, _ = out
    t = _table(root, "zhejiang", "air_quality")
    for station in set(t["station_id"].to_pylist()):
        dates = t.filter(pc.equal(t["station_id"], station))["date"].to_pylist()
        assert dates == [dt.date(2025, 1, 1) + dt.timedelta(days=i) for i in range(len(dates))]

    generate(tmp_path, scale=1.0, nodes=["wuhu"])
    full = _table(tmp_path, "wuhu", "air_quality")
    months = np.array([d.month for d in full["date"].to_pylist()])
    assert sorted(set(months)) == list(range(1, 13))
    assert full.num_rows == 2 * 365
    pm = full["pm25"].to_numpy()
    winter, summer = np.isin(months, [12, 1, 2]), np.isin(months, [6, 7, 8])
    assert pm[winter].mean() > 1.3 * pm[summer].mean()
    aqi = full["aqi"].to_numpy()
    assert aqi.min() >= 0 and aqi.max() <= 500
    # AQI is the max sub-index, so it is at least the PM2.5 sub-index below 35 µg/m³ ~ 50.
    low = pm <= 35
    assert np.all(aqi[low] >= np.ceil(pm[low] * 50 / 35 - 1e-9))


def test_miit_overlaps_regions_partially(out: tuple[Path, dict[str, list[Path]]]) -> None:
    root, _ = out
    miit = _table(root, "miit", "industry_enterprises")
    codes = miit["credit_code"].to_pylist()
    assert len(set(codes)) == len(codes)
    assert all(is_valid_credit_code(c) for c in codes)
    regional = set().union(*(_codes(root, n) for n in REGIONAL_NODES))
    inside, outside = set(codes) & regional, set(codes) - regional
    assert len(inside) == round(0.3 * len(regional))
    assert math.isclose(len(outside) / len(codes), 0.1, abs_tol=0.01)
    # Every regional node contributes, and outside codes come from other provinces.
    for node in REGIONAL_NODES:
        assert inside & _codes(root, node), node
    assert all(c[2:4] not in ("31", "32", "33", "34") for c in outside)
    assert pc.sum(miit["specialized_sme"].cast(pa.int64())).as_py() > 0


def test_miit_alone_matches_full_run(out: tuple[Path, dict[str, list[Path]]], tmp_path: Path):
    root, _ = out
    generate(tmp_path, scale=SCALE, nodes=["miit"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["miit"]
    assert _hashes(tmp_path / "miit") == _hashes(root / "miit")


def test_deterministic(out: tuple[Path, dict[str, list[Path]]], tmp_path: Path) -> None:
    root, _ = out
    generate(tmp_path / "same", scale=SCALE)
    assert _hashes(tmp_path / "same") == _hashes(root)

    generate(tmp_path / "other", scale=SCALE, seed=7)
    first, other = _hashes(root), _hashes(tmp_path / "other")
    assert first.keys() == other.keys()
    for name in first:
        if name.endswith(".parquet"):
            assert first[name] != other[name], name


def test_progress_reports_every_file(tmp_path: Path) -> None:
    messages: list[str] = []
    generate(tmp_path, scale=0.02, nodes=["hefei", "miit"], progress=messages.append)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(messages) == len(files) == 8
    assert all("\n" not in m for m in messages)


@pytest.mark.parametrize("scale", [0, -1.0, float("nan"), float("inf")])
def test_bad_scale(tmp_path: Path, scale: float) -> None:
    with pytest.raises(InvalidArgument):
        generate(tmp_path, scale=scale)


def test_unknown_node(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="nanjing"):
        generate(tmp_path, nodes=["shanghai", "nanjing"])
    assert not any(tmp_path.iterdir())  # checked before anything is written
