"""Transport-free federation logic: SQL, PSI, training, membership, envelopes."""

from federation import offline  # noqa: F401  (before any Flower import: see the module)
