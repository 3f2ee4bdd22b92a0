"""Privacy-budget arithmetic on a fixed grid of 1e-12 epsilon.

Budgets are kept in whole units of 1e-12 epsilon, as decimals: binary floats would make
three releases of 0.1 overrun a budget of 0.3 (0.1 + 0.1 + 0.1 > 0.3), or, compared with
a tolerance, let the total creep over it. Charges round up, budgets down, so rounding can
only ever refuse a release, never let one through over the budget.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal

_GRID = Decimal("1e-12")


def _units(value: float, rounding: str) -> int:
    return int((Decimal(repr(float(value))) / _GRID).to_integral_value(rounding))


def within_budget(spent: float, charge: float, budget: float) -> bool:
    """Whether ``charge`` more still fits: never over the budget, at 1e-12 resolution."""
    total = _units(spent, ROUND_HALF_EVEN) + _units(charge, ROUND_CEILING)
    return total <= _units(budget, ROUND_FLOOR)


def add_epsilon(spent: float, charge: float) -> float:
    """The new total, on the same grid (so that ten charges of 0.1 are exactly 1.0)."""
    units = _units(spent, ROUND_HALF_EVEN) + _units(charge, ROUND_CEILING)
    return float(Decimal(units) * _GRID)
