"""A PSI side's ``where``: measured before it is parsed, and only a condition is taken;
every odd value of a side's fields is a typed refusal, never Python's exception text."""

from __future__ import annotations

import contextlib
import resource
import time

import pytest

from federation.sql import MAX_SQL_CHARS
from gateway.errors import FedgateError, InvalidArgument
from gateway.planning import join_or_refuse
from gateway.roles.psi_home import PsiSideAsk, psi_sql

RIGHT = PsiSideAsk("jiangsu", "ds", "k")


def _peak_mib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10


def test_a_where_over_the_sql_limit_is_refused_before_it_is_parsed() -> None:
    where = " AND ".join(["a = 1"] * 300_000)  # 2.9 MiB: fits a 4 MiB message
    before, start = _peak_mib(), time.process_time()  # CPU, not the machine's load
    with pytest.raises(InvalidArgument, match=f"limit is {MAX_SQL_CHARS}"):
        psi_sql(PsiSideAsk("anhui", "ds", "k", where), RIGHT)
    # parsed, it took 21.9 s and two gigabytes before the length was looked at
    assert time.process_time() - start < 1.0
    assert _peak_mib() - before < 100


@pytest.mark.parametrize("where", ["*", "1a", "a;b", "a\nb", "select", "a AS b", "(SELECT 1)"])
def test_a_where_that_is_not_a_condition_is_invalid_argument(where: str) -> None:
    with pytest.raises(InvalidArgument, match="is not a condition"):
        psi_sql(PsiSideAsk("anhui", "ds", "k", where), RIGHT)


def test_a_condition_is_still_taken() -> None:
    sql = psi_sql(PsiSideAsk("anhui", "ds", "k", "city = 'Hefei' AND n > 3"), RIGHT)
    assert "l.city = 'Hefei'" in sql and "l.n > 3" in sql


ODD = ['a"b', "a`b", "a'b", "\x00", "a\x00b", "\u202e", "é", "𝔸", "1a", "", " ", "a.b", "a;b"]
ODD += ["*", "\\", "a\nb", "ﬁ", "İ", "\ufeff", "x" * 9000, "select", "null", "true", "$1"]
ODD += ["?", "@a", "#a", "a-b"]


@pytest.mark.parametrize("field", ["node", "dataset", "column", "where"])
def test_every_odd_value_of_a_side_is_a_typed_refusal(field: str) -> None:
    for value in ODD:
        side = {"node": "anhui", "dataset": "ds", "column": "k", "where": "", field: value}
        # a typed refusal or a plan; anything else fails the test with its own exception
        with contextlib.suppress(FedgateError):
            join_or_refuse(psi_sql(PsiSideAsk(**side), RIGHT))


def test_both_sides_at_one_node_is_said_of_a_psi() -> None:
    # the join form's "a join aggregate joins datasets of two different nodes" confused
    # a PSI user (seen by a new user)
    with pytest.raises(InvalidArgument) as info:
        psi_sql(PsiSideAsk("jiangsu", "other", "k"), RIGHT)
    assert info.value.message == (
        "--left and --right are both at node jiangsu: a PSI intersects the sets of two"
        " different nodes"
    )
