"""The fedgate node, its roles, its command line and its client."""

from federation import offline  # noqa: F401  (before any Flower import: see the module)
