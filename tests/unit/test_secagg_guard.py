"""What an owner checks of each SecAgg+ stage, against a home telling stories.

The attack these close (found in review): the home leaves some owners' shares out of a
target's masked round, then tells each owner a different, self-consistent story of who
dropped, and so gathers both the target's mask seed and the keys of the owners it was
masked with. An owner now insists on every owner's keys, every other owner's shares in
its masked round, and an unmask that names every owner alive.
"""

from __future__ import annotations

import pytest
from flwr.app import ConfigRecord
from flwr.common.secure_aggregation.secaggplus_constants import Key, Stage

from gateway.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from gateway.training.secagg_guard import (
    SecAggRound,
    check_same_model,
    check_stage,
    model_statement,
)

ME, OTHERS = 1, (2, 3, 4)
ALL = (ME, *OTHERS)


def setup(sample: int = 4, shares: int = 4, threshold: int = 3) -> ConfigRecord:
    return ConfigRecord(
        {
            Key.STAGE: Stage.SETUP,
            Key.SAMPLE_NUMBER: sample,
            Key.SHARE_NUMBER: shares,
            Key.THRESHOLD: threshold,
        }
    )


def keys(nodes: tuple[int, ...]) -> ConfigRecord:
    rec = ConfigRecord({str(n): [bytes([n]) * 32, bytes([n + 100]) * 32] for n in nodes})
    rec[Key.STAGE] = Stage.SHARE_KEYS
    return rec


def masked(sources: tuple[int, ...]) -> ConfigRecord:
    return ConfigRecord(
        {Key.SOURCE_LIST: list(sources), Key.CIPHERTEXT_LIST: [b"x"] * len(sources)}
    )


def unmask(active: tuple[int, ...], dead: tuple[int, ...] = ()) -> ConfigRecord:
    return ConfigRecord({Key.ACTIVE_NODE_ID_LIST: list(active), Key.DEAD_NODE_ID_LIST: list(dead)})


def ready() -> SecAggRound:
    state = SecAggRound()
    check_stage("secagg.setup", setup(), ME, state)
    check_stage("secagg.share_keys", keys(ALL), ME, state)
    return state


def test_an_honest_round_passes() -> None:
    state = ready()
    check_stage("train", masked(OTHERS), ME, state)
    check_stage("secagg.unmask", unmask(ALL), ME, state)
    assert state.nodes == frozenset(ALL)


@pytest.mark.parametrize(
    ("config", "says"),
    [
        (setup(threshold=1), "strict majority"),
        (setup(threshold=2), "strict majority"),  # 2 of 4 is not a majority
        (setup(shares=3, threshold=2), "every other's secrets"),
        (setup(sample=2, shares=2, threshold=2), "fewer than the run.s 3"),
        (ConfigRecord({Key.SAMPLE_NUMBER: 4.0, Key.SHARE_NUMBER: 4, Key.THRESHOLD: 3}), "integer"),
    ],
)
def test_a_setup_that_weakens_the_secrets_is_refused(config: ConfigRecord, says: str) -> None:
    with pytest.raises(InvalidArgument, match=says):
        check_stage("secagg.setup", config, ME, SecAggRound())


def test_keys_of_fewer_owners_or_without_this_one_are_refused() -> None:
    for nodes in ((ME, 2, 3), (2, 3, 4, 5)):
        state = SecAggRound()
        check_stage("secagg.setup", setup(), ME, state)
        with pytest.raises(InvalidArgument, match="every owner of the round"):
            check_stage("secagg.share_keys", keys(nodes), ME, state)


def test_a_masked_round_without_every_other_owners_shares_is_refused() -> None:
    state = ready()
    with pytest.raises(InvalidArgument, match="every other owner"):
        check_stage("train", masked((2, 3)), ME, state)  # 4's shares left out
    with pytest.raises(InvalidArgument, match="every other owner"):
        check_stage("train", masked((2, 3, 3)), ME, state)


@pytest.mark.parametrize(
    ("active", "dead"),
    [
        ((ME, 2, 3), (4,)),  # the story one owner is told ...
        ((ME, 3, 4), (2,)),  # ... and another: together both secrets of the target
        ((ME, 2, 3), ()),  # one left out
        ((2, 3, 4), ()),  # this owner left out
        ((ME, 2, 3, 4, 9), ()),  # a stranger
    ],
)
def test_an_unmask_that_is_not_everyone_alive_is_refused(
    active: tuple[int, ...], dead: tuple[int, ...]
) -> None:
    state = ready()
    check_stage("train", masked(OTHERS), ME, state)
    with pytest.raises(InvalidArgument, match="every owner of the round alive"):
        check_stage("secagg.unmask", unmask(active, dead), ME, state)


@pytest.mark.parametrize(
    "text",
    ['{"body": [1], "signature": "s", "cert": "c"}', '{"body": {}, "signature": "s", "cert": 5}'],
)
def test_a_malformed_key_statement_is_a_clear_refusal(text: str) -> None:
    """A statement is parsed before its signature is checked: a body that is no object
    or a certificate that is no text is refused as such, not an internal error."""
    from gateway.receipts import Receipt

    with pytest.raises(InvalidArgument, match="not a fedgate receipt"):
        Receipt.from_json(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"body": {}, "cert": "c"}', "not a fedgate receipt: it has no 'signature'"),
        ("[1, 2]", "not a fedgate receipt: a JSON object is one"),
        ("{", "not a fedgate receipt: not JSON"),
    ],
)
def test_a_receipt_that_is_no_receipt_says_so_in_words(text: str, message: str) -> None:
    # was Python's own text ("'signature'", "list indices must be integers ...")
    from gateway.receipts import Receipt

    with pytest.raises(InvalidArgument) as info:
        Receipt.from_json(text)
    assert info.value.message == message


def _signed(statements: dict[str, tuple[str, dict]]) -> tuple[ConfigRecord, object]:
    """Statements as ConfigRecord text, and a ``member`` that reads who signed each."""
    rec = ConfigRecord({node: f"stmt-{node}" for node in statements})

    def member(text: str) -> tuple[str, dict]:
        return statements[text.removeprefix("stmt-")]

    return rec, member


def _round_state(model: str = "d1") -> SecAggRound:
    return SecAggRound(
        sample=4,
        nodes=frozenset(ALL),
        signers={str(n): f"member{n}" for n in ALL},
        model=model,
    )


def test_unmasking_needs_every_owner_to_have_signed_the_same_model() -> None:
    state = _round_state()
    same = {str(n): (f"member{n}", model_statement("run", 1, n, "d1")) for n in ALL}
    rec, member = _signed(same)
    check_same_model(rec, state, "run", 1, member)  # type: ignore[arg-type]
    for broken, why in (
        ({**same, "3": ("member3", model_statement("run", 1, 3, "d2"))}, "another model"),
        ({**same, "3": ("member2", model_statement("run", 1, 3, "d1"))}, "not signed by it"),
        ({k: v for k, v in same.items() if k != "4"}, "did not say which model"),
        ({**same, "2": ("member2", model_statement("run", 2, 2, "d1"))}, "another model"),
    ):
        rec, member = _signed(broken)
        with pytest.raises(PermissionDenied, match=why):
            check_same_model(rec, state, "run", 1, member)  # type: ignore[arg-type]
    with pytest.raises(FailedPrecondition, match="before its masked training"):
        check_same_model(rec, _round_state(model=""), "run", 1, member)  # type: ignore[arg-type]
