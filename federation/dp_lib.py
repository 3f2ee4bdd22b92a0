"""The one way fedgate loads OpenDP: only the modules it calls, "contrib" enabled.

``opendp.prelude`` also imports OpenDP's extras (scikit-learn and SciPy with them, where
installed): 2 s of a fresh owner's first DP release, against 0.07 s for the modules below.
"""

from __future__ import annotations

import functools
from types import SimpleNamespace


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
