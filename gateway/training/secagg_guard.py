"""What an owner checks of a SecAgg+ stage before Flower's ``secaggplus_mod`` answers it.

The mod trusts the server's parameters. A home that set a threshold of one share, or
named the same owner both alive and dropped in an unmask, would rebuild both that
owner's mask seed and its key, and so its single update. The owner therefore insists
that a secret needs a strict majority of the shares (each owner answers one unmask a
round: ``check_order``), that it is among the live owners it was asked to unmask for,
and that no owner is named both alive and dropped. What stays outside: the home relays
the public keys, so a home that substitutes its own keys for an owner's (an active
attack) is not stopped here (docs/training.md, 'Secure aggregation').
"""

from __future__ import annotations

from flwr.app import ConfigRecord
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key

from federation.training.config import SECAGG_MIN_NODES
from gateway.errors import InvalidArgument

MAX_ROUND_DIGITS = 6


def stage_round(group_id: str) -> int:
    """A SecAgg+ stage carries its round only as Flower's group id."""
    if not group_id.isdigit() or len(group_id) > MAX_ROUND_DIGITS:
        raise InvalidArgument("a SecAgg+ stage names its round as its group id")
    return int(group_id)


def _int(rec: ConfigRecord, key: str) -> int:
    v = rec.get(key)
    if type(v) is not int:
        raise InvalidArgument(f"a SecAgg+ setup without an integer {key!r}")
    return v


def _ids(rec: ConfigRecord, key: str) -> list[int]:
    v = rec.get(key)
    if not isinstance(v, list) or any(type(x) is not int for x in v):
        raise InvalidArgument(f"a SecAgg+ unmask without a list of node ids {key!r}")
    return [int(x) for x in v]


def check_stage(step: str, configs: ConfigRecord | None, node_id: int) -> None:
    """Refuse a setup or unmask that would let the home rebuild one owner's update."""
    if configs is None:
        raise InvalidArgument(f"a SecAgg+ stage without its {RECORD_KEY_CONFIGS!r}")
    if step == "secagg.setup":
        sample, shares, threshold = (
            _int(configs, k) for k in (Key.SAMPLE_NUMBER, Key.SHARE_NUMBER, Key.THRESHOLD)
        )
        if sample < SECAGG_MIN_NODES:
            raise InvalidArgument(f"SecAgg+ over fewer than {SECAGG_MIN_NODES} owners")
        if not (2 <= threshold <= shares <= sample and 2 * threshold > shares):
            raise InvalidArgument(
                f"a SecAgg+ threshold of {threshold} of {shares} shares: a secret must need "
                "a strict majority of the shares"
            )
    elif step == "secagg.unmask":
        active = _ids(configs, Key.ACTIVE_NODE_ID_LIST)
        dead = _ids(configs, Key.DEAD_NODE_ID_LIST)
        if set(active) & set(dead):
            raise InvalidArgument("an unmask names an owner both alive and dropped")
        if node_id not in active:
            raise InvalidArgument("an unmask that does not count this owner alive")
