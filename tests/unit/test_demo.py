"""The demo's own parts, without a federation: whom its grants are for."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.demo.provision import REGION_DIR, Federation, plan
from gateway.demo.showcase import grantee_orgs


def _planned() -> Federation:
    name, nodes, analysts = plan(REGION_DIR, free_ports=False)
    return Federation(Path("never-made"), name, tuple(nodes), tuple(analysts))


@pytest.mark.parametrize("home", [n.id for n in _planned().nodes])
def test_the_demo_grants_the_organisation_it_runs_as(home: str) -> None:
    # review (2026-12-05): only the analysts' organisations (Shanghai, Anhui) were
    # granted, so `demo --home jiangsu` (run as ops@jiangsu) was refused every answer
    fed = _planned()
    orgs = grantee_orgs(fed, home)
    assert fed.node(home).org in orgs  # the org of its analyst and of its operator alike
    assert set(grantee_orgs(fed)) <= set(orgs)  # every analyst's organisation still


def test_without_a_home_the_analysts_organisations_are_granted() -> None:
    fed = _planned()  # as the tests' federation and the benchmarks write them
    assert grantee_orgs(fed) == sorted({fed.node(h).org for _user, h in fed.analysts})
