"""What deciding shares across operations (query, psi, train).

Each operation's module says which columns it uses in which role and what else its
release needs; the rest is here and written once: the level a request is judged at,
which grants are candidates, a candidate's status and purpose, and which refusal is
reported when no candidate permits the request.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping

from federation.envelope import Requester
from gateway.descriptor import DatasetDescriptor
from gateway.errors import FedgateError, InvalidArgument, PermissionDenied, ResourceExhausted
from gateway.policy.floors import FLOORS, Floor, effective_level
from gateway.policy.model import Grant

# Most specific grantee first: a user's own grant speaks before its organisation's.
_KIND_ORDER = {"user": 0, "org": 1, "node": 2}
# How "no grant lets X <verb> D" reads for each operation.
_VERBS = {"query": "query", "psi": "run PSI on", "train": "train on"}

# The states of a grant an operator ended (or let end), as against one still in force.
_ENDED = frozenset({"revoked", "expired"})

Check = Callable[[Grant], None]
"""An operation's own test of one candidate grant: raises PermissionDenied to refuse it."""


def level_of(desc: DatasetDescriptor, columns: Iterable[str]) -> tuple[str, Floor]:
    """The level a request using ``columns`` is judged at, and its floor.

    Refuses a column the dataset does not declare (InvalidArgument) and core data (L4),
    before any grant is looked at: no grant can make these usable.
    """
    declared = {c.name for c in desc.columns}
    used = list(columns)
    unknown = [c for c in used if c not in declared]
    if unknown:
        raise InvalidArgument(f"{desc.name} has no column {unknown[0]!r}")
    level = effective_level(desc, used)
    floor = FLOORS[level]
    if not floor.releasable:
        core = [c for c in used if desc.column_level(c) == "L4"]
        what = f"column {core[0]!r} of {desc.name}" if core else desc.name
        raise PermissionDenied(f"{what} is {level} (core data): nothing leaves the node")
    return level, floor


def matches(grant: Grant, requester: Requester, home_node: str) -> bool:
    """Whether ``grant`` is for this requester (a user at its org, its org, or its home)."""
    if grant.grantee_kind == "user":
        return grant.grantee == requester.id and grant.grantee_org == requester.org
    if grant.grantee_kind == "org":
        return grant.grantee == requester.org
    return grant.grantee == home_node


def candidates(
    grants: Iterable[Grant], dataset: str, operation: str, requester: Requester, home_node: str
) -> list[Grant]:
    """The grants that could permit ``operation`` on ``dataset``, most specific first."""
    found = [
        g
        for g in grants
        if g.dataset == dataset and operation in g.operations and matches(g, requester, home_node)
    ]
    found.sort(key=lambda g: _KIND_ORDER[g.grantee_kind])
    return found


def purpose_matches(grant: Grant, purpose: str) -> bool:
    """A grant without a purpose allows any; otherwise the stated one, case and spaces aside."""
    return not grant.purpose or grant.purpose.strip().lower() == purpose.strip().lower()


# A role a query uses a column in, and the controls any one of which allows it. A
# bucket (``floor(x / 10)``, ``year(day)``, a CASE mapping) is a group key coarser than
# the range filters a ``filter`` control allows; the owner also checks it is coarse.
_ALLOWED_BY = {"bucket": ("group_by", "filter")}


def check_columns(grant: Grant, roles: Mapping[str, Collection[str]]) -> None:
    """Refuse unless every column may be used in every role it is used in, naming the
    control that is missing."""
    for column, used_as in sorted(roles.items()):
        allowed = set(grant.columns.get(column, ()))
        missing = sorted(r for r in used_as if allowed.isdisjoint(_ALLOWED_BY.get(r, (r,))))
        if missing:
            allowed_text = ", ".join(sorted(allowed)) or "not named in the grant"
            needs = " or ".join(_ALLOWED_BY.get(missing[0], (missing[0],)))
            raise PermissionDenied(
                f"column {column!r} may not be used as {missing[0]} under grant {grant.id}: "
                f"it needs the {needs} control (allowed: {allowed_text})"
            )


def choose(
    grants: Iterable[Grant],
    desc: DatasetDescriptor,
    operation: str,
    requester: Requester,
    home_node: str,
    purpose: str,
    now: str,
    check: Check,
    charge: float | None = None,
) -> Grant:
    """The first candidate that permits the request, or refuse with the first reason met.

    Candidates are tried most specific first, each in a fixed order: its status (a spent
    budget is ResourceExhausted, anything else not active PermissionDenied), its purpose,
    then the operation's ``check``. The refusal reported is the most specific grant's,
    which is the one the requester most likely meant; but a revoked or expired grant is
    one an operator ended, so when a grant still in force refused too, its reason is the
    one that tells the requester what to ask for (the ended one is named after it).
    """
    found = candidates(grants, desc.name, operation, requester, home_node)
    if not found:
        raise PermissionDenied(f"no grant lets {requester} {_VERBS[operation]} {desc.name}")
    refusals: list[tuple[type[FedgateError], str]] = []
    ended: list[str] = []
    for g in found:
        status = g.status(now, charge)
        if status == "budget spent":
            refusals.append((ResourceExhausted, f"the privacy budget of grant {g.id} is spent"))
        elif status in _ENDED:
            ended.append(f"grant {g.id} is {status}")
        elif status != "active":
            refusals.append((PermissionDenied, f"grant {g.id} is {status}"))
        elif not purpose_matches(g, purpose):
            refusals.append((PermissionDenied, f"grant {g.id} is for the purpose {g.purpose!r}"))
        else:
            try:
                check(g)
            except PermissionDenied as exc:
                refusals.append((PermissionDenied, exc.message))
            else:
                return g
    if not refusals:
        raise PermissionDenied(ended[0])
    exc_type, message = refusals[0]
    if ended:  # the first, and how many more (a requester may hold many old grants)
        more = f"; and {len(ended) - 1} more ended" if len(ended) > 1 else ""
        message += f" ({ended[0]}{more})"
    raise exc_type(message)


def dp_bounds(desc: DatasetDescriptor) -> dict[str, tuple[float, float]]:
    """Every declared column bound: what values are clamped to before noise is added."""
    return {
        c.name: (c.lower, c.upper)
        for c in desc.columns
        if c.lower is not None and c.upper is not None
    }
