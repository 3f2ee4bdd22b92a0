"""The federation bench_abuse.py attacks: a home and two owners, the same synthetic
enterprises published twice at L2 (noised, and under the owner's ``exact`` opt-out)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from gateway import descriptor
from gateway.client import Client, Profile
from gateway.demo.launcher import NodeProcess
from gateway.demo.provision import Federation
from gateway.policy.model import Grant

HOME = "home"
OWNERS = ("owner1", "owner2")
ANALYST = "eve@home"  # the attacker: an ordinary analyst with an ordinary grant
ORG = "home bureau"
NOISED, EXACT = "firms", "firms_exact"
CITIES = tuple(f"city{i}" for i in range(8))
INDUSTRIES = tuple(f"{s}{d:02d}" for s in "ABCDE" for d in range(6))

COLUMNS = (
    descriptor.ColumnSpec("city", "string"),
    descriptor.ColumnSpec("industry_code", "string"),
    descriptor.ColumnSpec("founding_year", "int64", lower=1980, upper=2025),
    descriptor.ColumnSpec("employees", "int64", lower=0, upper=100_000),
    descriptor.ColumnSpec("revenue", "float64", lower=0, upper=1e7),
)
CONTROLS = {
    "city": ("group_by", "filter"),
    "industry_code": ("group_by", "filter"),
    "founding_year": ("group_by", "filter"),
    "employees": ("aggregate", "filter"),
    "revenue": ("aggregate",),
}


@dataclass
class Bench:
    """The running federation every part works against."""

    fed: Federation
    procs: list[NodeProcess]  # kept up to date by a part that restarts a node
    analyst: Profile
    data: dict[str, pa.Table]  # owner -> its rows (the ground truth)

    def proc(self, node: str) -> NodeProcess:
        return next(p for p in self.procs if p.node_id == node)


def make_firms(rows: int, seed: int) -> pa.Table:
    """Enterprises with heavy-tailed sizes, like a registry: most small, a few large."""
    rng = np.random.default_rng(seed)
    employees = np.maximum(1, rng.lognormal(3.0, 1.2, rows)).astype(np.int64)
    revenue = np.round(employees * rng.lognormal(4.0, 0.6, rows), 2)
    return pa.table(
        {
            "city": pa.array(rng.choice(CITIES, rows)),
            "industry_code": pa.array(rng.choice(INDUSTRIES, rows)),
            "founding_year": pa.array(rng.integers(1980, 2025, rows), pa.int64()),
            "employees": pa.array(employees, pa.int64()),
            "revenue": pa.array(revenue, pa.float64()),
        }
    )


def publish(fed: Federation, owner: str, table: pa.Table) -> None:
    root = fed.data_dir(owner)
    pq.write_table(table, root / "firms.parquet")
    with Client(Profile.load(fed.operator_profile(owner)), timeout=120) as ops:
        for name, exact in ((NOISED, False), (EXACT, True)):
            desc = descriptor.DatasetDescriptor(
                name=name,
                title="Enterprises",
                description="synthetic enterprise registry",
                department="bench",
                level="L2",
                update_frequency="static",
                path="firms.parquet",
                format="parquet",
                columns=COLUMNS,
            )
            (root / f"{name}.toml").write_text(descriptor.dumps(desc))
            ops.register(root / f"{name}.toml")
            ops.add_grant(
                Grant(
                    id="",
                    dataset=name,
                    grantee_kind="org",
                    grantee=ORG,
                    operations=("query",),
                    min_group_size=5,
                    columns=dict(CONTROLS),
                    exact=exact,
                )
            )
