"""An auditor's offline replay of a log against its grants (review, 2026-12-04:
``audit verify`` checked the chain and signatures, not that each release was covered)."""

from __future__ import annotations

import pytest

from federation.canonical import canonical
from gateway.grant_replay import violations


def _log(*bodies: dict) -> list[tuple[int, str, str]]:
    """As the verifier hands them over: each entry's number, kind and canonical body."""
    return [(i, b["kind"], canonical(b)) for i, b in enumerate(bodies, start=1)]


ORG = "Shanghai Big Data Center"


def _written(grant: str, **limits: object) -> dict:
    """As ``GrantStore.add_in`` writes it: an org grant for queries on firms."""
    return {
        "kind": "grant.written",
        "grant_id": grant,
        "dataset": "firms",
        "operations": ["query"],
        "grantee_kind": "org",
        "grantee": ORG,
        "grantee_org": "",
        "purpose": "",
        "valid_from": "",
        **limits,
    }


def _release(
    grant: str, epsilon: float = 0.0, time: str = "2026-12-04T10:00:00Z", **fields: object
) -> dict:
    """As the release pipeline writes it (``pipeline.release_entry``)."""
    return {
        "kind": "release",
        "grant_id": grant,
        "epsilon": epsilon,
        "time": time,
        "dataset": "firms",
        "operation": "query",
        "requester": "analyst:li.wei@shanghai",
        "requester_org": ORG,
        "home_node": "shanghai",
        "purpose": "monthly report",
        "owner": "anhui",
        "request_id": "r-1",
        "result_digest": "0" * 64,
        **fields,
    }


def test_releases_within_their_grants_pass() -> None:
    log = _log(
        _written("g1", max_uses=2, dp_budget=0.3, expires="2026-12-05T00:00:00Z"),
        _release("g1", 0.1),
        _release("g1", 0.2),  # 0.1 + 0.2 is 0.3 exactly on the node's grid
        _written("g2"),
        *[_release("g2") for _ in range(50)],  # no limits
    )
    assert violations(log) == []


def test_each_kind_of_uncovered_release_is_named() -> None:
    log = _log(
        _release("ghost"),
        _written("uses", max_uses=1),
        _release("uses"),
        _release("uses"),
        _written("dp", dp_budget=1.0),
        _release("dp", 0.6),
        _release("dp", 0.6),
        _written("old", expires="2026-12-01T00:00:00Z"),
        _release("old"),
        _written("gone"),
        {"kind": "grant.revoked", "grant_id": "gone"},
        _release("gone"),
    )
    assert violations(log) == [
        "release 1 names grant 'ghost', never written at this node",
        "release 4 under grant uses beyond its 1 uses",
        "release 7 under grant dp beyond its DP budget",
        "release 9 under grant old after it expired",
        "release 12 under grant gone after its revocation",
    ]


def test_a_release_outside_what_its_grant_names_is_named() -> None:
    """Review, 2026-12-04 (later): the replay checked uses, budget and time only, so a
    release of another dataset, operation or grantee, or before ``valid_from``, passed."""
    log = _log(
        _written("g", valid_from="2026-12-01T00:00:00Z", purpose="Monthly Report "),
        _release("g"),  # covered: the purpose matches case and spaces aside
        _release("g", time="2026-11-30T23:59:59Z"),
        _release("g", dataset="social_insurance"),
        _release("g", operation="train"),
        _release("g", requester_org="Other Org"),
        _release("g", purpose="another study"),
        _written("u", grantee_kind="user", grantee="li.wei@shanghai", grantee_org=ORG),
        _release("u"),
        _release("u", requester="analyst:wang@shanghai"),
        _written("n", grantee_kind="node", grantee="shanghai"),
        _release("n"),
        _release("n", home_node="zhejiang"),
        _written("o", operations=["query", "psi"], grantee="上海市大数据中心"),
        _release("o", requester_org="上海市大数据中心", operation="psi"),
        _release("o", requester_org="上海市大数据中心", dataset="firms_secret"),
        _release("o", requester_org="上海市大数据中心", purpose='"dataset":"x"'),
        _release("o", requester_org="上海市大数据中心x"),
    )
    assert violations(log) == [
        "release 3 under grant g before it was valid",
        "release 4 under grant g is of dataset 'social_insurance', not the grant's 'firms'",
        "release 5 under grant g is a 'train' release, which the grant does not allow",
        "release 6 under grant g is for analyst:li.wei@shanghai of 'Other Org' via "
        "'shanghai', not the grant's grantee",
        "release 7 under grant g is for another purpose than the grant's",
        "release 10 under grant u is for analyst:wang@shanghai of "
        "'Shanghai Big Data Center' via 'shanghai', not the grant's grantee",
        "release 13 under grant n is for analyst:li.wei@shanghai of "
        "'Shanghai Big Data Center' via 'zhejiang', not the grant's grantee",
        "release 16 under grant o is of dataset 'firms_secret', not the grant's 'firms'",
        "release 18 under grant o is for analyst:li.wei@shanghai of '上海市大数据中心x' via "
        "'shanghai', not the grant's grantee",
    ]


def test_an_epsilon_that_is_not_a_charge_is_named_not_counted() -> None:
    """A negative epsilon would refund budget; NaN and infinity crashed the replay."""
    log = _log(
        _written("dp", dp_budget=1.0),
        _release("dp", 0.5),
        _release("dp", -1.0),
        _release("dp", float("nan")),
        _release("dp", float("inf")),
        _release("dp", 0.5),
        _release("dp", 0.5),  # over 1.0: the negative charge refunded nothing
    )
    assert violations(log) == [
        "release 3 under grant dp charged an epsilon of -1.0",
        "release 4 under grant dp charged an epsilon of nan",
        "release 5 under grant dp charged an epsilon of inf",
        "release 7 under grant dp beyond its DP budget",
    ]


def test_fields_with_escaped_characters_are_read_whole() -> None:
    quoted = 'a "quoted" purpose \\ with a backslash'
    log = _log(_written("g", purpose=quoted), _release("g", purpose=quoted))
    assert violations(log) == []
    log = _log(_written("g", purpose=quoted), _release("g", purpose="a plain one"))
    assert violations(log) == ["release 2 under grant g is for another purpose than the grant's"]


def test_a_grant_written_again_is_named_and_resets_nothing() -> None:
    """Review (2026-12-04, night): a node never writes one grant id twice (it is the
    grants table's key), but the replay took a second grant.written as a fresh grant:
    uses and budget went back to 0."""
    log = _log(
        _written("g", max_uses=1),
        _release("g"),
        _written("g", max_uses=1),
        _release("g"),
    )
    assert violations(log) == [
        "grant g is written again at entry 3",
        "release 4 under grant g beyond its 1 uses",
    ]


def test_chunks_judged_together_name_the_same_releases(monkeypatch: pytest.MonkeyPatch) -> None:
    """The common case is judged a chunk of releases at once (counts over the joined
    bodies); a chunk holding any other release is judged release by release, in order."""
    from gateway import grant_replay

    log = _log(
        _written("g", max_uses=9, dp_budget=1.0, valid_from="2026-12-01T00:00:00Z"),
        *[_release("g") for _ in range(4)],
        _release("g", dataset="secret"),
        _release("g", 0.6),
        _release("g", 0.6),
        _release("g", time="2026-11-01T00:00:00Z"),
        {"kind": "grant.revoked", "grant_id": "g"},
        _release("g"),
        _release("g"),
    )
    whole = violations(log)
    assert whole == [
        "release 6 under grant g is of dataset 'secret', not the grant's 'firms'",
        "release 8 under grant g beyond its DP budget",
        "release 9 under grant g before it was valid",
        "release 11 under grant g after its revocation",
        "release 12 under grant g after its revocation",
        "release 12 under grant g beyond its 9 uses",
    ]
    for every in (1, 2, 3, 5):
        monkeypatch.setattr(grant_replay, "JUDGE_EVERY", every)
        assert violations(log) == whole, every


def test_a_body_whose_time_is_not_its_last_key_is_judged_alone() -> None:
    """A second review: a training release has keys after "time" (``update_norm``), so
    its time is not at the end of its body; a grant with ``expires`` only then let such
    a release past its expiry through the chunk's check."""
    log = _log(
        _written("g", expires="2026-12-05T00:00:00Z"),
        _release("g", time="2027-06-01T00:00:00Z", update_norm=1.5),
        _release("g", time="2026-12-01T00:00:00Z", update_norm=1.5),
    )
    assert violations(log) == ["release 2 under grant g after it expired"]
