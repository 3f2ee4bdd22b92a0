"""What an owner checks of a SecAgg+ stage before Flower's ``secaggplus_mod`` answers it.

The mod trusts the server's parameters. A home that set a threshold of one share, left
an owner's shares out of another's masked round, or told different owners different
stories about who dropped would rebuild both an owner's mask seed and its key, and so
its single update. The owner therefore insists on a strict majority threshold with
every owner holding a share of every other's secrets, on the shares of every other
owner in its masked round, and on an unmask that names every owner alive: a round with
a dropout ends (each owner answers one unmask a round: ``check_order``). And since the
home relays the public keys, each owner signs its own (``key_statement``) and checks
every other's (``check_signed_keys``): no home can pass off keys of its own. Nor models:
each owner signs the digest of the model it masked its update of (``model_statement``),
and unmasks only when every owner of the round signed the same (``check_same_model``).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key

from federation.training.config import SECAGG_MIN_NODES
from gateway.errors import FailedPrecondition, InvalidArgument, PermissionDenied

MAX_ROUND_DIGITS = 6


def stage_round(group_id: str) -> int:
    """A SecAgg+ stage carries its round only as Flower's group id."""
    if not _digits(group_id, MAX_ROUND_DIGITS):
        raise InvalidArgument("a SecAgg+ stage names its round as its group id")
    return int(group_id)


def _digits(text: str, most: int) -> bool:
    """1..``most`` ASCII digits (``str.isdigit`` also takes "²", which ``int`` refuses)."""
    return 0 < len(text) <= most and text.isascii() and text.isdigit()


def _int(rec: ConfigRecord, key: str) -> int:
    v = rec.get(key)
    if type(v) is not int:
        raise InvalidArgument(f"a SecAgg+ setup without an integer {key!r}")
    return v


def _ids(rec: ConfigRecord, key: str) -> list[int]:
    v = rec.get(key)
    if not isinstance(v, list) or any(type(x) is not int for x in v):
        raise InvalidArgument(f"a SecAgg+ stage without a list of node ids {key!r}")
    return [int(x) for x in v]


@dataclass
class SecAggRound:
    """What an owner remembers of a run's current SecAgg+ round: how many owners take
    part (setup) and which, by the keys it was given (share keys)."""

    sample: int = 0
    nodes: frozenset[int] = frozenset()
    signers: dict[str, str] = field(default_factory=dict)  # node id -> member, by its keys
    setup: str = ""  # the digest of the round's setup parameters (weights, ranges ...)
    model: str = ""  # the digest of what this owner masked its update of (``round_digest``)


def key_statement(run: str, round_: int, node: int, pk1: bytes, pk2: bytes) -> dict[str, Any]:
    """What an owner signs of its round's public keys: whose they are, in which run."""
    return {
        "kind": "secagg.keys",
        "run": run,
        "round": round_,
        "node": node,
        "pk1": base64.b64encode(pk1).decode(),
        "pk2": base64.b64encode(pk2).decode(),
    }


def round_digest(setup: str, arrays: ArrayRecord, settings: ConfigRecord | None) -> str:
    """The digest of everything the home chose for an owner's masked round: the setup's
    parameters (``setup``, a ``record_digest``), the global model as it arrived (keys,
    dtypes, shapes and bytes, in order) and the settings it trains with (the round, the
    pooled mean and std, the proximal term: what the owner keeps of the message's). Any
    of them told apart for one owner (another model, a std that makes the others' updates
    vanish, a weight that rounds theirs to zero) would leave its update alone in the sum;
    owners sent the same compute the same digest."""
    h = hashlib.sha256(setup.encode() + b"\x00")
    for key, array in arrays.items():
        for part in (key, array.dtype, repr(tuple(array.shape)), array.stype):
            h.update(part.encode() + b"\x00")
        h.update(hashlib.sha256(array.data).digest())
    h.update(record_digest(settings).encode())
    return h.hexdigest()


def record_digest(record: ConfigRecord | None) -> str:
    """A ConfigRecord's digest over its items in key order (bytes as hex)."""

    def plain(v: Any) -> Any:
        if isinstance(v, bytes):
            return {"bytes": v.hex()}  # never equal to a text value
        return [plain(x) for x in v] if isinstance(v, list) else v

    items = {} if record is None else {k: plain(v) for k, v in record.items()}
    text = json.dumps(items, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def model_statement(run: str, round_: int, node: int, digest: str) -> dict[str, Any]:
    """What an owner signs of what it masked its update of (``round_digest``), in which
    run and round."""
    return {"kind": "secagg.model", "run": run, "round": round_, "node": node, "model": digest}


def check_same_model(
    statements: ConfigRecord | None,
    state: SecAggRound,
    run: str,
    round_: int,
    member: Callable[[str], tuple[str, dict[str, Any]]],
) -> None:
    """Before an owner unmasks: every owner of the round says, signed by the member whose
    keys it has, that it was sent the model this owner was. A home that sends one owner
    a model whose units answer to its rows and the others one with those units dead
    would read that owner's update out of the sum; here it gets no unmasking."""
    if not state.model:
        raise FailedPrecondition(f"an unmask of round {round_} before its masked training")
    for node in sorted(state.nodes):
        text = statements.get(str(node)) if statements is not None else None
        if not isinstance(text, str):
            raise PermissionDenied(f"owner {node} did not say which model it was sent")
        signer, body = member(text)
        if signer != state.signers.get(str(node)):
            raise PermissionDenied(f"the model statement of owner {node} is not signed by it")
        expected = model_statement(run, round_, node, state.model)
        if any(body.get(k) != v for k, v in expected.items()):
            raise PermissionDenied(
                f"owner {node} was sent another model than this owner in round {round_}: "
                "nothing is unmasked"
            )


def check_signed_keys(
    configs: ConfigRecord,
    statements: ConfigRecord | None,
    run: str,
    round_: int,
    member: Callable[[str], tuple[str, dict[str, Any]]],
) -> dict[str, str]:
    """Every owner's keys in a share-keys message are signed by a distinct member for
    this run and round: a home cannot slip in keys of its own for another owner (to
    read the shares meant for it). ``member`` checks a statement's signature; the signer
    of each owner's keys is returned, for the caller to check they are the run's owners."""
    signers: dict[str, str] = {}
    for key in (k for k in configs if k != Key.STAGE):
        text = statements.get(key) if statements is not None else None
        if not isinstance(text, str):
            raise PermissionDenied(f"the SecAgg+ keys of owner {key} come unsigned")
        signer, body = member(text)
        keys = configs[key]
        pk1, pk2 = (keys[0], keys[1]) if isinstance(keys, list) and len(keys) == 2 else (b"", b"")
        if not isinstance(pk1, bytes) or not isinstance(pk2, bytes):
            raise InvalidArgument("a SecAgg+ key share holds two keys per owner")
        expected = key_statement(run, round_, int(key), pk1, pk2)
        if any(body.get(k) != v for k, v in expected.items()):
            raise PermissionDenied(f"the SecAgg+ keys of owner {key} are not the ones it signed")
        if signer in signers.values():
            raise PermissionDenied(f"member {signer!r} signed the keys of two owners")
        signers[key] = signer
    return signers


def check_stage(
    step: str,
    configs: ConfigRecord | None,
    me: int,
    state: SecAggRound,
    least: int = SECAGG_MIN_NODES,
) -> None:
    """Refuse a stage that would let the home rebuild one owner's update: a minority
    threshold, a round where not every owner holds a share of every other's secrets, a
    masked training that omits an owner's shares, or an unmask that calls anyone dropped
    or leaves anyone out (a home telling each owner a different story could otherwise
    gather both an owner's mask seed and its key). Every owner stays through a round."""
    if configs is None:
        raise InvalidArgument(f"a SecAgg+ stage without its {RECORD_KEY_CONFIGS!r}")
    if step == "secagg.setup":
        sample, shares, threshold = (
            _int(configs, k) for k in (Key.SAMPLE_NUMBER, Key.SHARE_NUMBER, Key.THRESHOLD)
        )
        if sample < max(least, SECAGG_MIN_NODES):
            raise InvalidArgument(
                f"SecAgg+ over {sample} owners, fewer than the run's {max(least, SECAGG_MIN_NODES)}"
            )
        if shares != sample:
            raise InvalidArgument("every owner holds a share of every other's secrets")
        if not (2 <= threshold <= shares and 2 * threshold > shares):
            raise InvalidArgument(
                f"a SecAgg+ threshold of {threshold} of {shares} shares: a secret must need "
                "a strict majority of the shares"
            )
        state.sample, state.nodes = sample, frozenset()
        state.signers, state.model = {}, ""
        state.setup = record_digest(configs)
    elif step == "secagg.share_keys":
        ids = [k for k in configs if k != Key.STAGE]
        if not all(_digits(k, 20) for k in ids):
            raise InvalidArgument("a SecAgg+ key share names owners by number")
        nodes = frozenset(int(k) for k in ids)
        if len(nodes) != state.sample or me not in nodes:
            raise InvalidArgument("the keys of every owner of the round, this one's too")
        state.nodes = nodes
    elif step == "train":
        sources = _ids(configs, Key.SOURCE_LIST)
        if sorted(sources) != sorted(state.nodes - {me}):
            raise InvalidArgument("a masked round carries the shares of every other owner")
    elif step == "secagg.unmask":
        active = _ids(configs, Key.ACTIVE_NODE_ID_LIST)
        dead = _ids(configs, Key.DEAD_NODE_ID_LIST)
        if dead or sorted(active) != sorted(state.nodes):
            raise InvalidArgument(
                "an unmask names every owner of the round alive: one that dropped ends the round"
            )
