"""PSI cardinality and join aggregates between two real owner nodes (docs/psi.md).

Each scenario registers its own pair of datasets (one at Shanghai, one at Jiangsu) with
generated credit codes and grants it to Li Wei's organisation (his home is Shanghai):
the cardinality must equal the exact intersection of the canonical identifier sets, and a
join aggregate must equal DuckDB on the pooled, joined rows.
"""

from __future__ import annotations

import random

import duckdb
import grpc
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gateway import credit_code as cc
from gateway.client import ClientError
from gateway.descriptor import ColumnSpec, DatasetDescriptor, dumps
from tests.conftest import RunningFederation

pytestmark = pytest.mark.integration

ANALYST = "li.wei@shanghai"
LEFT, RIGHT = "shanghai", "jiangsu"
K = 5


def codes(rng: random.Random, n: int) -> list[str]:
    """``n`` distinct valid credit codes."""
    out: set[str] = set()
    while len(out) < n:
        serial = "".join(rng.choice(cc.CHARSET) for _ in range(8))
        out.add(cc.make_credit_code("9", "1", "310000", serial))
    return sorted(out)


def register(
    fed: RunningFederation,
    node: str,
    name: str,
    table: pa.Table,
    columns: tuple[ColumnSpec, ...],
    controls: dict[str, str],
    operations: tuple[str, ...] = ("psi",),
    exact: bool = False,
    level: str = "L2",
    **grant_fields: object,
) -> None:
    root = fed.fed.data_dir(node)
    pq.write_table(table, root / f"{name}.parquet")
    desc = DatasetDescriptor(
        name=name,
        title=name,
        description="",
        department="Test",
        level=level,
        update_frequency="static",
        path=f"{name}.parquet",
        format="parquet",
        columns=columns,
    )
    (root / f"{name}.toml").write_text(dumps(desc))
    with fed.client(f"ops@{node}") as ops:
        ops.register(root / f"{name}.toml")
    org = fed.fed.node("shanghai").org
    fed.grant(
        node,
        dataset=name,
        grantee_kind="org",
        grantee=org,
        operations=operations,
        columns=controls,
        exact=exact,
        **{"min_group_size": K, **grant_fields},
    )


ID_COLUMNS = (ColumnSpec("credit_code", "string"), ColumnSpec("part", "int64"))
ID_CONTROLS = {"credit_code": "join_key", "part": "filter"}


def id_table(values: list[str], parts: list[int]) -> pa.Table:
    return pa.table(
        {"credit_code": pa.array(values, pa.string()), "part": pa.array(parts, pa.int64())}
    )


def psi(fed: RunningFederation, left: str, right: str, **kw: str):  # type: ignore[no-untyped-def]
    with fed.client(ANALYST) as c:
        return c.psi(f"{LEFT}:{left}.credit_code", f"{RIGHT}:{right}.credit_code", **kw)


@pytest.mark.parametrize(
    ("case", "n_left", "n_right", "overlap"),
    [
        ("some", 300, 250, 120),
        ("none", 40, 30, 0),
        ("full", 60, 60, 60),
        ("empty", 0, 50, 0),
        ("tiny", 1, 1, 1),
    ],
)
def test_cardinality_is_the_exact_intersection(
    federation: RunningFederation, case: str, n_left: int, n_right: int, overlap: int
) -> None:
    rng = random.Random(case)
    pool = codes(rng, n_left + n_right)
    shared = pool[:overlap]
    left = shared + pool[overlap:n_left]
    right = shared + pool[n_left : n_left + n_right - overlap]
    # Duplicates, lower case, padding and a broken check character on the left: the owner
    # canonicalises, drops the invalid one and counts distinct identifiers.
    dirty = list(left) + left[:3] + [c.lower() for c in left[3:5]] + [f" {c} " for c in left[5:6]]
    if left:
        dirty.append(left[0][:-1] + ("0" if left[0][-1] != "0" else "1"))
    register(
        federation, LEFT, f"psi_{case}_l", id_table(dirty, [0] * len(dirty)), ID_COLUMNS,
        ID_CONTROLS,
    )  # fmt: skip
    register(
        federation, RIGHT, f"psi_{case}_r", id_table(right, [0] * len(right)), ID_COLUMNS,
        ID_CONTROLS,
    )  # fmt: skip
    seen: list[object] = []
    answer = psi(federation, f"psi_{case}_l", f"psi_{case}_r", on_progress=seen.append)
    expected = len(set(left) & set(right))
    if expected >= K:
        assert not answer.suppressed
        assert answer.intersection == expected
    else:
        assert answer.suppressed and answer.intersection == -1
    assert answer.min_group_size == K
    assert {o.node_id for o in answer.owners} == {LEFT, RIGHT}
    assert all(o.receipt for o in answer.owners)
    for node in (LEFT, RIGHT):
        entries = [
            e for e in federation.audit(node, "release") if e.get("request_id") == answer.request_id
        ]
        assert len(entries) == 1 and entries[0]["operation"] == "psi"
        # The set sizes are the owner's own record, never in what reaches the analyst.
        assert not {"own_size", "peer_size"} & set(entries[0])
        (session,) = [
            e for e in federation.audit(node, "psi.session") if e["request_id"] == answer.request_id
        ]
        mine, theirs = (left, right) if node == LEFT else (right, left)
        assert (session["own_size"], session["peer_size"]) == (len(set(mine)), len(set(theirs)))
    # Progress says how far, never how many: each stage starts and ends, whatever the
    # sizes (these sets are small: their stages are too short for tenths between).
    assert seen and all(p.total == 1000 and p.done in (0, 1000) for p in seen)
    stages = ("blinded", "received", "reblinded", "matched")
    assert {p.stage for p in seen if p.done == 1000} == set(stages)
    assert [p.done for p in seen if p.stage == "blinded"] == [0, 1000]


JOIN_L_COLUMNS = (ColumnSpec("credit_code", "string"), ColumnSpec("sector", "string"))
JOIN_R_COLUMNS = (
    ColumnSpec("credit_code", "string"),
    ColumnSpec("revenue", "int64", lower=0, upper=10**9),
    ColumnSpec("city", "string"),
)


def test_join_aggregate_equals_duckdb_on_the_joined_rows(federation: RunningFederation) -> None:
    rng = random.Random(7)
    pool = codes(rng, 900)
    left_codes = pool[:600]
    right_codes = pool[200:900]
    sectors = ["C", "I", "M", "F", "Z"]
    lt = pa.table(
        {
            "credit_code": left_codes,
            "sector": [sectors[min(4, int(rng.expovariate(0.9)))] for _ in left_codes],
        }
    )
    rt = pa.table(
        {
            "credit_code": right_codes,
            "revenue": pa.array(
                [rng.randint(0, 10**7) if rng.random() > 0.1 else None for _ in right_codes],
                pa.int64(),
            ),
            "city": [rng.choice(["Nanjing", "Suzhou"]) for _ in right_codes],
        }
    )
    register(
        federation, LEFT, "join_l", lt, JOIN_L_COLUMNS,
        {"credit_code": "join_key", "sector": "group_by"}, exact=True,
    )  # fmt: skip
    register(
        federation, RIGHT, "join_r", rt, JOIN_R_COLUMNS,
        {"credit_code": "join_key", "revenue": "aggregate", "city": "filter"}, exact=True,
    )  # fmt: skip
    sql = (
        "SELECT a.sector, COUNT(*) AS n, SUM(b.revenue) AS revenue, AVG(b.revenue) AS avg_rev "
        "FROM shanghai.join_l a JOIN jiangsu.join_r b ON a.credit_code = b.credit_code "
        "WHERE b.city = 'Suzhou' GROUP BY a.sector ORDER BY a.sector"
    )
    with federation.client(ANALYST) as c:
        result = c.query(sql)
    db = duckdb.connect()
    db.register("l", lt)
    db.register("r", rt)
    want = db.execute(
        "SELECT a.sector, COUNT(*) AS n, SUM(b.revenue) AS revenue, AVG(b.revenue) AS avg_rev "
        "FROM l a JOIN r b ON a.credit_code = b.credit_code WHERE b.city = 'Suzhou' "
        f"GROUP BY a.sector HAVING COUNT(*) >= {K} ORDER BY a.sector"
    ).fetchall()
    got = [tuple(r.values()) for r in result.table.to_pylist()]
    assert [g[:3] for g in got] == [w[:3] for w in want]
    for g, w in zip(got, want, strict=True):
        assert g[3] == pytest.approx(w[3], rel=1e-12)
    assert len(result.receipts) == 2


def test_psi_without_a_psi_grant_is_refused_and_logged(federation: RunningFederation) -> None:
    rng = random.Random("nogrant")
    values = codes(rng, 20)
    register(federation, LEFT, "psi_ng_l", id_table(values, [0] * 20), ID_COLUMNS, ID_CONTROLS)
    register(
        federation, RIGHT, "psi_ng_r", id_table(values, [0] * 20), ID_COLUMNS,
        {"credit_code": "filter", "part": "filter"}, operations=("query",),
    )  # fmt: skip
    before = federation.releases()
    with pytest.raises(ClientError) as err:
        psi(federation, "psi_ng_l", "psi_ng_r")
    assert err.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert "psi_ng_r" in str(err.value)
    refused = [e for e in federation.audit(RIGHT, "psi.refused") if e.get("dataset") == "psi_ng_r"]
    assert refused and refused[-1]["code"] == "PERMISSION_DENIED"
    assert federation.releases() == before


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("missing", ["psi", "join_key"])
def test_either_owner_without_psi_or_join_key_refuses_and_logs(
    federation: RunningFederation, side: str, missing: str
) -> None:
    """Each owner decides for itself: a grant without the ``psi`` operation, or one whose
    identifier column is not a ``join_key``, at either side stops the session there."""
    rng = random.Random(f"nogrant-{side}-{missing}")
    values = codes(rng, 20)
    names = {"left": f"ng_{missing}_{side}_l", "right": f"ng_{missing}_{side}_r"}
    for s, node in (("left", LEFT), ("right", RIGHT)):
        controls, ops = dict(ID_CONTROLS), ("psi",)
        if s == side and missing == "psi":
            ops = ("query",)
        if s == side and missing == "join_key":
            controls["credit_code"] = "filter"
        table = id_table(values, [0] * 20)
        register(federation, node, names[s], table, ID_COLUMNS, controls, operations=ops)
    refuser, dataset = (LEFT, names["left"]) if side == "left" else (RIGHT, names["right"])
    before = federation.releases()
    with pytest.raises(ClientError) as err:
        psi(federation, names["left"], names["right"])
    assert err.value.code == grpc.StatusCode.PERMISSION_DENIED, err.value
    if missing == "psi":
        assert dataset in str(err.value)
    else:  # the grant is found; the column's control is what it lacks
        assert "needs the join_key control (allowed: filter)" in str(err.value)
    refused = [e for e in federation.audit(refuser, "psi.refused") if e.get("dataset") == dataset]
    assert refused and refused[-1]["code"] == "PERMISSION_DENIED"
    assert federation.releases() == before


def test_explain_says_what_each_owner_decides_and_who_learns_what(
    federation: RunningFederation,
) -> None:
    rng = random.Random("explain")
    values = codes(rng, 30)
    register(federation, LEFT, "psi_ex_l", id_table(values, [0] * 30), ID_COLUMNS, ID_CONTROLS)
    register(federation, RIGHT, "psi_ex_r", id_table(values, [0] * 30), ID_COLUMNS, ID_CONTROLS)
    before = federation.releases()
    answer = psi(federation, "psi_ex_l", "psi_ex_r", explain=True, left_where="part = 0")
    assert federation.releases() == before
    by_node = {o.node_id: o for o in answer.owners}
    assert set(by_node) == {LEFT, RIGHT}
    for node in (LEFT, RIGHT):
        e = by_node[node].explanation
        assert e is not None and e.min_group_size == K
        assert e.columns["credit_code"] == ("join_key",)
    assert by_node[LEFT].explanation.columns["part"] == ("filter",)
    parties = dict(answer.learns)
    assert set(parties) == {
        f"{LEFT} (matching owner)",
        f"{RIGHT} (other owner)",
        "home node",
        "analyst",
    }
    assert "size" in parties[f"{RIGHT} (other owner)"]


def test_fedgate_psi_command(federation: RunningFederation, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import run_fedgate

    rng = random.Random("cli")
    pool = codes(rng, 80)
    register(federation, LEFT, "psi_cli_l", id_table(pool[:50], [0] * 50), ID_COLUMNS, ID_CONTROLS)
    register(federation, RIGHT, "psi_cli_r", id_table(pool[20:], [0] * 60), ID_COLUMNS, ID_CONTROLS)
    profile = federation.fed.profile_path(ANALYST)
    out = run_fedgate(
        "psi", "--profile", str(profile), "--left", f"{LEFT}:psi_cli_l.credit_code",
        "--right", f"{RIGHT}:psi_cli_r.credit_code", "--receipts", str(tmp_path),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "intersection: 30" in out.stdout
    assert len(list(tmp_path.glob("*.json"))) == 2
    bad = run_fedgate("psi", "--profile", str(profile), "--left", "shanghai", "--right", "x:y.z")
    assert bad.returncode == 2 and "NODE:DATASET.COLUMN" in bad.stderr


def test_join_of_several_value_columns_over_many_rows_is_exact(
    federation: RunningFederation,
) -> None:
    """Two value columns (an integer and a decimal) over more rows than one batch holds:
    integer sums come back as integers, decimal sums exactly, AVG as DuckDB's."""
    from decimal import Decimal

    rng = random.Random(11)
    pool = codes(rng, 9000)
    lt = pa.table({"credit_code": pool[:6000], "sector": [rng.choice("ABC") for _ in range(6000)]})
    right_codes = pool[1000:9000]
    rt = pa.table(
        {
            "credit_code": right_codes,
            "revenue": pa.array(
                [
                    rng.randint(-(10**6), 10**9) if rng.random() > 0.05 else None
                    for _ in right_codes
                ],
                pa.int64(),
            ),
            "amount": pa.array(
                [Decimal(rng.randint(0, 10**9)) / 100 for _ in right_codes], pa.decimal128(12, 2)
            ),
            "city": [rng.choice(["Nanjing", "Suzhou"]) for _ in right_codes],
        }
    )
    register(
        federation, LEFT, "wide_l", lt, JOIN_L_COLUMNS,
        {"credit_code": "join_key", "sector": "group_by"}, exact=True,
    )  # fmt: skip
    register(
        federation, RIGHT, "wide_r", rt,
        (*JOIN_R_COLUMNS, ColumnSpec("amount", "decimal(12,2)", lower=0, upper=10**7)),
        {"credit_code": "join_key", "revenue": "aggregate", "amount": "aggregate"}, exact=True,
    )  # fmt: skip
    body = (
        "a.sector, COUNT(*) AS n, SUM(b.revenue) AS revenue, AVG(b.revenue) AS avg_rev, "
        "SUM(b.amount) AS amount FROM {l} a JOIN {r} b ON a.credit_code = b.credit_code "
        "GROUP BY a.sector ORDER BY a.sector"
    )
    with federation.client(ANALYST) as c:
        result = c.query("SELECT " + body.format(l="shanghai.wide_l", r="jiangsu.wide_r"))
    db = duckdb.connect()
    db.register("l", lt)
    db.register("r", rt)
    want = db.execute("SELECT " + body.format(l="l", r="r")).fetchall()
    got = [tuple(r.values()) for r in result.table.to_pylist()]
    assert [(g[0], g[1], g[2], g[4]) for g in got] == [(w[0], w[1], w[2], w[4]) for w in want]
    assert all(isinstance(g[2], int) and isinstance(g[4], Decimal) for g in got)
    for g, w in zip(got, want, strict=True):
        assert g[3] == pytest.approx(w[3], rel=1e-12)


def test_a_count_only_join_through_query_is_a_table(federation: RunningFederation) -> None:
    rng = random.Random("countonly")
    pool = codes(rng, 60)
    register(federation, LEFT, "cnt_l", id_table(pool[:40], [0] * 40), ID_COLUMNS, ID_CONTROLS)
    register(federation, RIGHT, "cnt_r", id_table(pool[10:], [0] * 50), ID_COLUMNS, ID_CONTROLS)
    with federation.client(ANALYST) as c:
        result = c.query(
            "SELECT COUNT(*) AS shared FROM shanghai.cnt_l a JOIN jiangsu.cnt_r b "
            "ON a.credit_code = b.credit_code"
        )
    assert result.table.to_pylist() == [{"shared": 30}]


def test_a_grouped_join_over_l2_needs_dp_or_the_exact_opt_in(
    federation: RunningFederation,
) -> None:
    """Regrouping the same sets would show groups under k by difference: without DP a
    grouped join needs each owner's exact opt-in; a plain count does not."""
    rng = random.Random("optin")
    pool = codes(rng, 60)
    lt = pa.table({"credit_code": pool[:50], "sector": ["A"] * 50})
    register(
        federation, LEFT, "optin_l", lt, JOIN_L_COLUMNS,
        {"credit_code": "join_key", "sector": "group_by"},
    )  # fmt: skip
    register(federation, RIGHT, "optin_r", id_table(pool[10:], [0] * 50), ID_COLUMNS, ID_CONTROLS)
    before = federation.releases()
    with federation.client(ANALYST) as c, pytest.raises(ClientError) as err:
        c.query(
            "SELECT a.sector, COUNT(*) FROM shanghai.optin_l a JOIN jiangsu.optin_r b "
            "ON a.credit_code = b.credit_code GROUP BY a.sector"
        )
    assert err.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert "exact answers" in str(err.value)
    assert federation.releases() == before
    assert psi(federation, "optin_l", "optin_r").intersection == 40


def test_the_other_owners_dp_does_not_switch_off_an_owners_own_rule(
    federation: RunningFederation,
) -> None:
    """Review (2026-12-04): the peer's epsilon (up to 1 000, a noise of nothing) used to
    count as DP for both owners, so a plain L2 grant's owner skipped its exact-answers rule
    and its differencing check. Its own grant decides now: refused, nothing released."""
    rng = random.Random("peer-dp")
    pool = codes(rng, 60)
    lt = pa.table({"credit_code": pool[:50], "sector": ["A"] * 50})
    register(
        federation, LEFT, "peerdp_l", lt, JOIN_L_COLUMNS,
        {"credit_code": "join_key", "sector": "group_by"},
    )  # fmt: skip
    register(
        federation, RIGHT, "peerdp_r", id_table(pool[10:], [0] * 50), ID_COLUMNS, ID_CONTROLS,
        dp_epsilon=1000.0, dp_budget=100000.0,
    )  # fmt: skip
    before = federation.releases()
    with federation.client(ANALYST) as c, pytest.raises(ClientError) as err:
        c.query(
            "SELECT a.sector, COUNT(*) FROM shanghai.peerdp_l a JOIN jiangsu.peerdp_r b "
            "ON a.credit_code = b.credit_code GROUP BY a.sector"
        )
    assert err.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert "exact answers" in str(err.value)
    refused = federation.audit(LEFT, "psi.refused")  # the plain L2 owner, by its own grant
    assert any("exact answers" in e["reason"] for e in refused if e.get("dataset") == "peerdp_l")
    assert federation.releases() == before


def test_join_sums_a_column_of_the_left_side_too(federation: RunningFederation) -> None:
    """The values may come from either side: here the matcher's (left) side holds them and
    the other owner the groups. Sums grouped by their own side's columns are refused (a
    side's own sums per its own groups are a single-owner query; docs/sql.md)."""
    rng = random.Random("left-values")
    pool = codes(rng, 700)
    lt = pa.table(
        {
            "credit_code": pool[:500],
            "revenue": pa.array([rng.randint(0, 10**8) for _ in range(500)], pa.int64()),
            "city": [rng.choice(["Pudong", "Minhang"]) for _ in range(500)],
        }
    )
    rt = pa.table({"credit_code": pool[150:700], "sector": [rng.choice("ABC") for _ in range(550)]})
    register(
        federation, LEFT, "lv_l", lt, JOIN_R_COLUMNS,
        {"credit_code": "join_key", "revenue": "aggregate", "city": "group_by"}, exact=True,
    )  # fmt: skip
    register(
        federation, RIGHT, "lv_r", rt, JOIN_L_COLUMNS,
        {"credit_code": "join_key", "sector": "group_by"}, exact=True,
    )  # fmt: skip
    body = (
        "{g} AS g, COUNT(*) AS n, SUM(a.revenue) AS revenue FROM {l} a JOIN {r} b "
        "ON a.credit_code = b.credit_code GROUP BY {g} ORDER BY g"
    )
    nodes = {"l": "shanghai.lv_l", "r": "jiangsu.lv_r"}
    with federation.client(ANALYST) as c:
        result = c.query("SELECT " + body.format(g="b.sector", **nodes))
    db = duckdb.connect()
    db.register("l", lt)
    db.register("r", rt)
    want = db.execute("SELECT " + body.format(g="b.sector", l="l", r="r")).fetchall()
    got = [tuple(r.values()) for r in result.table.to_pylist()]
    assert want and got == [tuple(w) for w in want]
    assert all(isinstance(g[2], int) for g in got)
    assert len(result.receipts) == 2
    before = federation.releases()
    with federation.client(ANALYST) as c, pytest.raises(ClientError) as err:
        c.query("SELECT " + body.format(g="a.city", **nodes))
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "grouped by the other side's columns" in str(err.value)
    assert federation.releases() == before


def test_a_dp_grouped_join_with_no_rows_on_the_group_side_releases_no_group(
    federation: RunningFederation,
) -> None:
    """Review (2026-12-04): with no rows on the matcher's (group) side, a phantom group 0
    was noised, and whenever its noisy count passed k the other owner spent and signed,
    then the matcher read the labels of a group it did not have: INTERNAL. An epsilon of
    1e-6 passes k about every other session: a dozen sessions find it."""
    rng = random.Random("empty-dp")
    pool = codes(rng, 40)
    lt = pa.table({"credit_code": pool[:30], "sector": ["C"] * 30})
    register(
        federation, LEFT, "edp_l", lt, JOIN_L_COLUMNS,
        {"credit_code": "join_key", "sector": "group_by,filter"},
        dp_epsilon=1e-6, dp_budget=1.0,
    )  # fmt: skip
    register(
        federation, RIGHT, "edp_r", id_table(pool[10:], [0] * 30), ID_COLUMNS, ID_CONTROLS,
        exact=True,
    )  # fmt: skip
    sql = (
        "SELECT a.sector, COUNT(*) AS n FROM shanghai.edp_l a JOIN jiangsu.edp_r b "
        "ON a.credit_code = b.credit_code WHERE a.sector = 'none' GROUP BY a.sector"
    )
    with federation.client(ANALYST) as c:
        for _ in range(12):
            result = c.query(sql)
            assert result.table.num_rows == 0
            assert len(result.receipts) == 2


def test_a_value_owner_refuses_a_column_without_bounds_before_it_remembers_the_session(
    federation: RunningFederation,
) -> None:
    """Review (2026-12-04): the value owner recorded a session (its ``psi.session`` entry
    and one of the grant's 1 000 places) before refusing, every time, a DP sum over a
    column with no declared bounds: sessions that could never run used up the grant."""
    rng = random.Random("no-bounds")
    pool = codes(rng, 40)
    lt = pa.table({"credit_code": pool[:30], "sector": ["C"] * 30})
    rt = pa.table({"credit_code": pool[10:], "amount": pa.array(list(range(30)), pa.int64())})
    register(
        federation, LEFT, "nb_l", lt, JOIN_L_COLUMNS,
        {"credit_code": "join_key", "sector": "group_by"},
        dp_epsilon=1.0, dp_budget=100.0,
    )  # fmt: skip
    register(
        federation, RIGHT, "nb_r", rt,
        (ColumnSpec("credit_code", "string"), ColumnSpec("amount", "int64")),
        {"credit_code": "join_key", "amount": "aggregate"}, exact=True,
    )  # fmt: skip
    before = federation.releases()
    with federation.client(ANALYST) as c, pytest.raises(ClientError) as err:
        c.query(
            "SELECT a.sector, SUM(b.amount) AS s FROM shanghai.nb_l a JOIN jiangsu.nb_r b "
            "ON a.credit_code = b.credit_code GROUP BY a.sector"
        )
    assert err.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert "'amount' has no declared bounds" in str(err.value)
    (refused,) = [e for e in federation.audit(RIGHT, "psi.refused") if e.get("dataset") == "nb_r"]
    assert "no declared bounds" in refused["reason"]
    sessions = federation.audit(RIGHT, "psi.session")
    assert not [e for e in sessions if e["request_id"] == refused["request_id"]]
    assert federation.releases() == before
