"""Budget arithmetic on the 1e-12 grid: charges round up, budgets down, totals exact."""

from __future__ import annotations

import pytest

from gateway.policy.budget import add_epsilon, within_budget
from tests.unit.test_policy_decide import NOW, dp


def test_ten_charges_of_a_tenth_are_exactly_one() -> None:
    spent = 0.0
    for _ in range(10):
        assert within_budget(spent, 0.1, 1.0)
        spent = add_epsilon(spent, 0.1)
    assert spent == 1.0 and not within_budget(spent, 0.1, 1.0)


def test_three_tenths_fit_a_budget_of_point_three() -> None:
    assert 0.1 + 0.1 + 0.1 > 0.3  # what binary floats alone would get wrong
    spent = add_epsilon(0.1, 0.1)
    assert within_budget(spent, 0.1, 0.3)
    assert add_epsilon(spent, 0.1) == 0.3


def test_the_grid_never_lets_a_total_over_the_budget() -> None:
    assert not within_budget(0.0, 1.0 + 1e-12, 1.0)
    assert not within_budget(0.0, 1.0 + 1e-13, 1.0)  # a charge under the grid rounds up
    assert within_budget(0.0, 1.0 - 1e-13, 1.0)
    assert not within_budget(0.0, 0.5, 0.5 - 1e-13)  # a budget under the grid rounds down


@pytest.mark.parametrize("charge", [1e-13, 0.3, 0.7])
def test_a_charge_is_never_recorded_as_less_than_it_is(charge: float) -> None:
    assert add_epsilon(0.0, charge) >= charge
    assert add_epsilon(0.0, charge) - charge < 1e-12


def test_zero_charge_fits_a_full_budget() -> None:
    assert within_budget(2.0, 0.0, 2.0)


def test_grant_status_follows_the_budget() -> None:
    assert dp(epsilon_spent=1.5).status(NOW) == "active"  # the last 0.5 of 2.0
    assert dp(epsilon_spent=add_epsilon(1.5, 0.5)).status(NOW) == "budget spent"
    assert dp(epsilon_spent=1.5 + 1e-12).status(NOW) == "budget spent"
