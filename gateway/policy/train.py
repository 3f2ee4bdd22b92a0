"""Deciding a federated training run at the owner."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from federation.envelope import Requester
from gateway.descriptor import DatasetDescriptor
from gateway.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from gateway.policy.decide import check_columns, choose, dp_bounds, level_of
from gateway.policy.model import Decision, Grant


def train_roles(desc: DatasetDescriptor, columns: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """The control each column of a run needs: ``group_by`` for a declared categorical
    column (trained on by group: one-hot), ``aggregate`` for the rest."""
    declared = {c.name: c.categories for c in desc.columns}
    return {c: ("group_by",) if declared.get(c) else ("aggregate",) for c in columns}


def decide_train(
    grants: Iterable[Grant],
    desc: DatasetDescriptor,
    features: Sequence[str],
    label: str,
    requester: Requester,
    home_node: str,
    purpose: str,
    now: str,
    task: str,
    rounds: int,
    dp: bool = False,
    charges: bool = True,
) -> Decision:
    """Pick the grant that lets the owner train on ``features`` and ``label``, or refuse.

    The grant must allow the ``train`` operation, and every feature and the label must
    have the control ``train_roles`` names: ``aggregate`` for a number (a model update is
    an aggregate of rows, a gradient or weight delta summed over the examples, so it
    needs what lets a query SUM the column), ``group_by`` for a column declaring
    categories (its one-hot columns are counts by group in every update).
    L3 data needs a grant with differential privacy (its dp_epsilon is charged per
    release, as for queries, and values are clamped to their declared bounds); L2 data
    a DP grant or one its owner marked ``exact`` (without DP the home, which chooses the
    model every round, could choose one that singles out rows: the owner's opt-in, as for
    exact L2 queries); L4 is refused outright. k = max(grant, floor) is the fewest rows the
    owner trains on.
    The grant names the built-in tasks it allows (``train_tasks``) and the most rounds a
    run may have (``max_rounds``). Under a DP grant the run must ask for differential
    privacy (``dp``: it names a clipping bound); the owner then clips and noises what it
    releases under its own epsilon (``gateway.training.dp``). A step that ``charges``
    nothing (a SecAgg+ setup, key sharing or unmask) is decided with epsilon 0: it needs
    no room in the budget and holds none in flight, so a run whose budget is exactly
    what its releases charge ends.
    """
    if not features:
        raise InvalidArgument("a training run names at least one feature")
    if label in features:
        raise InvalidArgument(f"column {label!r} cannot be both a feature and the label")
    columns = [*features, label]
    level, floor = level_of(desc, columns)
    roles = train_roles(desc, columns)

    def check(g: Grant) -> None:
        check_columns(g, roles)
        if floor.dp_required and not g.uses_dp:
            raise PermissionDenied(f"{level} data needs a grant with differential privacy")
        if level == "L2" and not g.uses_dp and not g.exact:
            raise PermissionDenied(
                "L2 data trains without differential privacy only under a grant its owner "
                "marked exact (--exact): the home chooses the model every round, and a "
                "model can single out rows; ask for a DP grant (and train with --dp CLIP)"
            )
        if task not in g.train_tasks:
            allowed = ", ".join(g.train_tasks) or "none"
            raise PermissionDenied(
                f"the grant does not allow the task {task!r} (allowed: {allowed})"
            )
        if g.max_rounds and rounds > g.max_rounds:
            raise PermissionDenied(
                f"{rounds} rounds asked, the grant allows at most {g.max_rounds}"
            )
        if g.uses_dp and not dp:
            raise FailedPrecondition(
                "the grant needs differential privacy: ask with --dp CLIP (each owner clips "
                "and noises what it releases, under its own epsilon)"
            )

    g = choose(
        grants, desc, "train", requester, home_node, purpose, now, check, None if charges else 0.0
    )
    k = max(g.min_group_size, floor.min_group_size)
    if g.uses_dp:
        return Decision(g, k, g.dp_epsilon if charges else 0.0, dp_bounds(desc), level)
    return Decision(g, k, 0.0, None, level)
