"""The sample federation's grants and showcase queries, shared by demo, tests and benchmarks.

Grants are written by each node's own operator through its own node, as in real use.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from gateway.client import Client, Profile
from gateway.demo.provision import Federation
from gateway.policy.model import Grant

if TYPE_CHECKING:
    from gateway.rpc.v1 import common_pb2


def _cols(**controls: str) -> dict[str, tuple[str, ...]]:
    return {c: tuple(v.split(",")) for c, v in controls.items()}


def sample_grants(grantee_org: str) -> list[Grant]:
    """What each regional bureau grants a partner organisation, by classification."""
    registry = Grant(  # L2: aggregates only, k >= 5
        id="",
        dataset="enterprise_registry",
        grantee_kind="org",
        grantee=grantee_org,
        operations=("query",),
        min_group_size=5,
        purpose="",
        columns=_cols(
            credit_code="join_key",
            industry_section="group_by,filter",
            industry_code="group_by,filter",
            city="group_by,filter",
            high_tech="group_by,filter,aggregate",
            founding_year="group_by,filter",
            employees="aggregate,filter",
            revenue="aggregate",
            registered_capital="aggregate",
        ),
    )
    return [
        registry,
        # PSI and joins carry no L2 noise: the owner's exact opt-in for them (a join's
        # sums still carry the ministry's DP noise, which the L3 side brings)
        replace(registry, operations=("psi",), exact=True),
        # L2 training without DP, in a grant of its own: the owner's exact opt-in (it
        # trusts the partner's home with the model) leaves the queries' L2 noise on
        replace(
            registry,
            operations=("train",),
            exact=True,
            train_tasks=("logreg", "mlp"),
            max_rounds=50,
        ),
        Grant(  # L3: aggregates only, k >= 10, differential privacy
            id="",
            dataset="social_insurance",
            grantee_kind="org",
            grantee=grantee_org,
            operations=("query",),
            min_group_size=10,
            dp_epsilon=0.5,
            dp_budget=50.0,
            purpose="labour market statistics",
            columns=_cols(
                gender="group_by",
                insurance_type="group_by,filter",
                city="group_by",
                birth_year="filter",
                monthly_wage="aggregate",
                contribution_months="aggregate",
            ),
        ),
        Grant(  # L1 open data: rows may be shown
            id="",
            dataset="air_quality",
            grantee_kind="org",
            grantee=grantee_org,
            operations=("query",),
            min_group_size=1,
            columns=_cols(
                station_id="raw,group_by",
                city="raw,group_by,filter",
                date="raw,filter",
                pm25="raw,aggregate,filter",
                pm10="raw,aggregate",
                no2="raw,aggregate",
                o3="raw,aggregate",
                aqi="raw,aggregate,filter",
            ),
        ),
    ]


def ministry_grant(grantee_org: str) -> Grant:
    return Grant(
        id="",
        dataset="industry_enterprises",
        grantee_kind="org",
        grantee=grantee_org,
        operations=("query", "psi"),
        min_group_size=10,
        dp_epsilon=1.0,
        dp_budget=100.0,
        purpose="",
        columns=_cols(
            credit_code="join_key",
            industry_code="group_by",
            industry_section="group_by",
            specialized_sme="group_by",
            rnd_expense="aggregate",
            patents="aggregate",
        ),
    )


def grantee_orgs(fed: Federation, home: str | None = None) -> list[str]:
    """The organisations the sample grants are for: every analyst's, and ``home``'s.

    The demo runs as ``home``'s analyst, else as its operator: without a grant to that
    node's organisation every answer it expects would be refused.
    """
    homes = [h for _user, h in fed.analysts] + ([home] if home else [])
    return sorted({fed.node(h).org for h in homes})


def write_sample_grants(fed: Federation, home: str | None = None) -> list[common_pb2.Grant]:
    """Every operator grants each of ``grantee_orgs`` its sample datasets."""
    orgs = grantee_orgs(fed, home)
    written = []
    for node in fed.nodes:
        with Client(Profile.load(fed.operator_profile(node.id))) as ops:
            names = {d.name for d in ops.catalog().datasets}
            for org in orgs:
                grants = [ministry_grant(org)] if node.level == "ministry" else sample_grants(org)
                for g in grants:
                    if g.dataset in names:
                        written.append(ops.add_grant(g))
    return written


@dataclass(frozen=True)
class Showcase:
    title: str
    sql: str
    purpose: str = ""
    expect_refusal: bool = False


SHOWCASES = (
    Showcase(
        "Enterprises, jobs and revenue by industry across the Delta (L2, k >= 5)",
        "SELECT industry_section, COUNT(*) AS enterprises, SUM(employees) AS employees, "
        "AVG(revenue) AS avg_revenue FROM enterprise_registry GROUP BY industry_section "
        "ORDER BY enterprises DESC LIMIT 6",
    ),
    Showcase(
        "High-tech enterprises in Anhui, through the province's vertical link to its cities",
        "SELECT city, COUNT(*) AS high_tech, AVG(employees) AS avg_employees, "
        "STDDEV_SAMP(employees) AS sd_employees FROM anhui.enterprise_registry "
        "WHERE high_tech GROUP BY city ORDER BY high_tech DESC",
    ),
    Showcase(
        "Average wage by insurance type (L3: k >= 10 and differential privacy at every owner)",
        "SELECT insurance_type, COUNT(*) AS insured, AVG(monthly_wage) AS avg_wage "
        "FROM social_insurance GROUP BY insurance_type ORDER BY insurance_type",
        purpose="labour market statistics",
    ),
    Showcase(
        "Worst air days (L1 open data: rows may be shown)",
        "SELECT city, date, aqi, pm25 FROM air_quality WHERE aqi > 150 ORDER BY aqi DESC LIMIT 5",
    ),
    Showcase(
        "Revenue of Anhui's enterprises on the ministry's list, by industry section (a join "
        "across two owners: keys matched by ECDH, sums under Paillier; the ministry's list is "
        "L3, so counts and sums carry DP noise of scale bound/epsilon: each sum here about "
        "3x10^7, revenue's declared bound 10^7 over a third of epsilon 1, so a sum smaller "
        "than that, negative ones too, is noise; docs/psi.md)",
        "SELECT m.industry_section, COUNT(*) AS enterprises, SUM(r.revenue) AS revenue "
        "FROM anhui.enterprise_registry r JOIN miit.industry_enterprises m "
        "ON r.credit_code = m.credit_code GROUP BY m.industry_section "
        "ORDER BY revenue DESC LIMIT 6",
    ),
    Showcase(
        "Refused: singling out one enterprise by its credit code",
        "SELECT COUNT(*), SUM(revenue) FROM enterprise_registry "
        "WHERE credit_code = '91310000MA1FL0XX4D'",
        expect_refusal=True,
    ),
    Showcase(
        "Refused: reading a file through the engine",
        "SELECT COUNT(*) FROM read_parquet('/etc/passwd')",
        expect_refusal=True,
    ),
)
