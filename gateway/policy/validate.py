"""Checking a grant as it is written, against the dataset it is for.

Refusing here, when the operator writes the grant, means a grant that the classification
does not allow never exists; the per-request decision still checks the floors again.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from federation.training.app_bundle import is_app_task
from federation.training.tasks import TASKS
from gateway.column_types import parse_type
from gateway.descriptor import DatasetDescriptor
from gateway.errors import FailedPrecondition, InvalidArgument
from gateway.policy.budget import within_budget
from gateway.policy.floors import FLOORS, effective_level
from gateway.policy.model import CONTROLS, GRANTEE_KINDS, OPERATIONS, Grant
from gateway.text import check_purpose, plain

# A DP grant's epsilon per release: below, the noise drowns every answer; above, there is none.
MIN_EPSILON, MAX_EPSILON = 1e-6, 1e3


def check_controls(column: str, controls: Iterable[str]) -> None:
    """Refuse a control that is not one of ``CONTROLS``, naming it: the one wording of a
    grant (``grant add``, an approval) and an access request alike."""
    bad = next((c for c in controls if c not in CONTROLS), None)
    if bad is not None:
        raise InvalidArgument(
            f"column {column[:100]!r}: unknown control {bad[:100]!r} "
            f"(the controls: {', '.join(CONTROLS)})"
        )


def validate(grant: Grant, desc: DatasetDescriptor) -> Grant:
    """Refuse a grant that the dataset's classification does not allow."""
    if grant.grantee_kind not in GRANTEE_KINDS:
        raise InvalidArgument(f"grantee kind {grant.grantee_kind!r} is not one of {GRANTEE_KINDS}")
    if not grant.grantee.strip():  # as the CA: no certificate names an org of spaces
        raise InvalidArgument("grantee must not be empty")
    for what, text in (
        ("the grantee", grant.grantee),
        ("the grantee's organisation", grant.grantee_org),
        ("the purpose", grant.purpose),
    ):
        plain(text, what)  # shown to operators and in the public report as written
    if grant.grantee_kind == "user" and not grant.grantee_org:
        raise InvalidArgument("a user grant names the user's organisation too (--user-org)")
    if grant.grantee_kind != "user" and grant.grantee_org:  # stored and shown, never matched
        raise InvalidArgument(
            "only a user grant names the user's organisation (--user-org); a grant to "
            f"a{'n' if grant.grantee_kind == 'org' else ''} {grant.grantee_kind} is matched "
            "by its grantee alone"
        )
    for name, value in (("dp_epsilon", grant.dp_epsilon), ("dp_budget", grant.dp_budget)):
        if not math.isfinite(value) or value < 0:
            raise InvalidArgument(f"{name} must be a finite number >= 0")
    if grant.dp_epsilon and not MIN_EPSILON <= grant.dp_epsilon <= MAX_EPSILON:
        raise InvalidArgument(
            f"dp_epsilon must be 0 (no DP) or between {MIN_EPSILON:g} and {MAX_EPSILON:g}"
        )
    check_purpose(grant.purpose)
    if grant.dp_budget and not grant.dp_epsilon:  # a "cap" that caps nothing
        raise InvalidArgument(
            "a DP budget without a DP epsilon limits nothing: give --dp-epsilon too, or use "
            "--max-uses to cap releases"
        )
    if grant.max_uses < 0 or grant.min_group_size < 1:
        raise InvalidArgument("max_uses must be >= 0 and min_group_size >= 1")
    bad_ops = [o for o in grant.operations if o not in OPERATIONS]
    if bad_ops or not grant.operations:
        raise InvalidArgument(f"operations must be some of {', '.join(OPERATIONS)}")
    if not grant.columns:
        raise InvalidArgument("a grant names at least one column (a column not named is unusable)")
    declared = {c.name for c in desc.columns}
    for column, controls in grant.columns.items():
        if column not in declared:
            raise InvalidArgument(f"column {column!r} is not a column of {desc.name}")
        if not controls:
            raise InvalidArgument(
                f"column {column!r}: no control given (the controls: {', '.join(CONTROLS)})"
            )
        check_controls(column, controls)
    level = effective_level(desc, list(grant.columns))
    floor = FLOORS[level]
    if not floor.releasable:
        raise FailedPrecondition(f"{desc.name} is {level} (core): nothing may leave the node")
    for column, controls in grant.columns.items():
        if "raw" in controls and FLOORS[effective_level(desc, [column])].raw is False:
            raise FailedPrecondition(
                f"column {column!r} is {effective_level(desc, [column])}: 'raw' needs L1 open data"
            )
    if grant.min_group_size < floor.min_group_size:
        raise FailedPrecondition(
            f"{level} needs a minimum group size of at least {floor.min_group_size}"
        )
    if floor.dp_required and not grant.uses_dp:
        raise FailedPrecondition(
            f"{level} needs differential privacy (--dp-epsilon and --dp-budget)"
        )
    if grant.train_tasks and "train" not in grant.operations:
        raise InvalidArgument("train tasks are for grants with the train operation")
    if "train" in grant.operations:
        unknown = [t for t in grant.train_tasks if t not in TASKS and not is_app_task(t)]
        if unknown:
            raise InvalidArgument(
                f"unknown training task {unknown[0]!r} (built in: {', '.join(TASKS)}; or a "
                "custom app as app:<digest>)"
            )
    if grant.max_rounds < 0 or grant.max_examples < 0:
        raise InvalidArgument("max rounds and max examples are 0 (no limit) or more")
    if grant.max_examples and grant.max_examples < max(grant.min_group_size, floor.min_group_size):
        raise InvalidArgument("max examples below the minimum group size would train on nothing")
    if grant.exact and grant.uses_dp:
        raise InvalidArgument("an exact grant has no noise: it cannot use DP as well")
    if grant.uses_dp:
        if not within_budget(0.0, grant.dp_epsilon, grant.dp_budget):  # as spends count
            raise InvalidArgument("dp budget must be at least the per-query epsilon")
        for column, controls in grant.columns.items():
            if "aggregate" in controls:
                spec = next(c for c in desc.columns if c.name == column)
                if parse_type(spec.type).numeric and (spec.lower is None or spec.upper is None):
                    raise FailedPrecondition(
                        f"column {column!r} has no declared bounds, needed to clamp it under DP"
                    )
    if grant.expires and grant.valid_from and grant.expires <= grant.valid_from:
        raise InvalidArgument(
            f"expires ({grant.expires}) must be after valid_from ({grant.valid_from})"
        )
    return grant
