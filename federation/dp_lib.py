"""The one way fedgate loads OpenDP: only the modules it calls, "contrib" enabled.

``opendp.prelude`` also imports OpenDP's extras (scikit-learn and SciPy with them, where
installed): 2 s of a fresh owner's first DP release, against 0.07 s for the modules below.
"""

from __future__ import annotations

import functools
import math
from types import SimpleNamespace
from typing import Any, NamedTuple


class Laplace(NamedTuple):
    measurement: Any  # OpenDP's Measurement (untyped)
    charge: float  # the epsilon it spends
    scale: float


@functools.cache
def opendp() -> SimpleNamespace:
    """OpenDP's domains, metrics, measurements (``m``) and transformations (``t``),
    imported on first use (start-up time)."""
    import opendp.domains as domains
    import opendp.measurements as measurements
    import opendp.metrics as metrics
    import opendp.mod as mod
    import opendp.transformations as transformations

    mod.enable_features("contrib")
    return SimpleNamespace(
        atom_domain=domains.atom_domain,
        vector_domain=domains.vector_domain,
        l1_distance=metrics.l1_distance,
        m=measurements,
        t=transformations,
    )


def laplace_within(space: tuple[Any, Any], sensitivity: float, epsilon: float) -> Laplace:
    """The Laplace measurement on ``space`` (domain, metric) whose charge for
    ``sensitivity`` (OpenDP's map, rounded up) is at most ``epsilon``: the scale goes up an
    ulp at a time until the map fits, so ten releases of 0.1 fit a budget of 1.0 exactly
    instead of overrunning it by ulps."""
    dp = opendp()
    scale = sensitivity / epsilon
    for _ in range(64):
        measurement = dp.m.make_laplace(*space, scale=scale)
        charge = float(measurement.map(sensitivity))
        if charge <= epsilon:
            return Laplace(measurement, charge, scale)
        scale = math.nextafter(scale, math.inf)
    raise ValueError(f"no Laplace scale charges at most {epsilon!r}")
