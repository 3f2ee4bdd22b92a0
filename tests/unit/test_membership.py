"""The signed membership document: verifies only as signed, and only when consistent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from federation.membership import (
    Member,
    Membership,
    MembershipError,
    check,
    member_from,
    sign,
    verify,
)
from gateway import identity


def _doc(*members: Member) -> Membership:
    return Membership("test", 1, "2026-01-01T00:00:00Z", members)


@pytest.fixture()
def keys(tmp_path: Path):
    identity.init_ca(tmp_path / "ca")
    key = identity.load_key(tmp_path / "ca" / identity.CA_KEY)
    return key, [key.public_key()]


PROVINCE = Member("anhui", "Anhui", "127.0.0.1:1000", "province")
CITY = Member("hefei", "Hefei", "127.0.0.1:1001", "city", "anhui")


def test_round_trip(keys) -> None:
    key, pubs = keys
    doc = verify(sign(_doc(PROVINCE, CITY), key), pubs)
    assert doc.get("hefei") == CITY and doc.children("anhui") == [CITY]
    assert doc.others("anhui") == [CITY]


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: d["members"][0].update(address="10.0.0.1:1000"),
        lambda d: d["members"].pop(),
        lambda d: d["members"].reverse(),
        lambda d: d.update(serial=2),
    ],
)
def test_any_edit_breaks_the_signature(keys, edit) -> None:
    key, pubs = keys
    envelope = json.loads(sign(_doc(PROVINCE, CITY), key))
    edit(envelope["document"])
    with pytest.raises(MembershipError, match="signature does not verify"):
        verify(json.dumps(envelope).encode(), pubs)


def test_signed_by_another_key_is_refused(keys, tmp_path: Path) -> None:
    identity.init_ca(tmp_path / "other")
    other = identity.load_key(tmp_path / "other" / identity.CA_KEY)
    with pytest.raises(MembershipError):
        verify(sign(_doc(PROVINCE), other), keys[1])


def test_malformed_document(keys) -> None:
    with pytest.raises(MembershipError, match="malformed"):
        verify(b"not json", keys[1])


@pytest.mark.parametrize(
    "members, message",
    [
        ((PROVINCE, PROVINCE), "appears twice"),
        ((CITY,), "parent 'anhui' is not a member"),
        ((Member("x", "X", "127.0.0.1:1", "county"),), "level"),
        ((Member("x", "X", "nowhere", "province"),), "host:port"),
        ((PROVINCE, Member("c", "C", "127.0.0.1:2", "city")), "needs a parent"),
        ((Member("all", "All", "127.0.0.1:3", "province"),), "'all' is not a node id"),
        ((Member("x", "X", 5, "province"),), "'address' must be a string"),  # type: ignore[arg-type]
        ((Member(["a"], "X", "127.0.0.1:1", "province"),), "'id' must be a string"),  # type: ignore[arg-type]
        ((Member("x", "X", "127.0.0.1:\u00b2", "province"),), "host:port"),
        ((Member("x", "X", "127.0.0.1:70000", "province"),), "port 70000 is over 65535"),
        ((Member("x", "X", "127.0.0.1:" + "9" * 5000, "province"),), "host:port"),
        # Review (2026-12-04): cycles of parents were accepted, and a home's walk up a
        # member's parents looped for ever.
        ((Member("x", "X", "127.0.0.1:1", "province", parent="x"),), "cycle through 'x'"),
        (
            (
                Member("a", "A", "127.0.0.1:1", "province", parent="b"),
                Member("b", "B", "127.0.0.1:2", "province", parent="a"),
            ),
            "its parents form a cycle",
        ),
    ],
)
def test_inconsistent_documents_are_refused(members, message) -> None:
    with pytest.raises(MembershipError, match=message):
        check(_doc(*members))


@pytest.mark.parametrize(
    "raw, message",
    [
        (
            {"id": "a", "org": "o", "address": "h:1", "level": "province", "colour": "red"},
            "member 'a': no field 'colour' (the fields: id, org, address, level, parent, name)",
        ),
        (
            {"id": "a", "org": "o", "level": "province"},
            "member 'a': the field 'address' is missing",
        ),
        ({"org": "o"}, "member 3: the field 'id' is missing"),
        ("anhui", "member 3 is not a table of fields"),
    ],
)
def test_a_member_table_is_read_naming_the_member_and_field(raw: object, message: str) -> None:
    # An operator's typo in `fedgate membership sign --input` showed a Python call's
    # complaint ("Member.__init__() got an unexpected keyword argument") (seen by a new user)
    with pytest.raises(MembershipError) as info:
        member_from(raw, 2)
    assert str(info.value) == message
    good = {"id": "a", "org": "o", "address": "h:1", "level": "province"}
    assert member_from(good, 0) == Member("a", "o", "h:1", "province")


def test_an_unreadable_membership_file_keeps_the_last_good_document(tmp_path: Path) -> None:
    """Review (2026-12-05): a membership file that cannot be read (a folder in its place,
    a copy the node's user may not read) raised OSError at every call, so every RPC to the
    node failed INTERNAL. It is refused like a document that does not verify: the last
    good one is kept, the refusal said once per cause; a readable newer one is taken."""
    from gateway.membership_source import MembershipSource

    identity.init_ca(tmp_path / "ca")
    key = identity.load_key(tmp_path / "ca" / identity.CA_KEY)
    bundle = identity.load_bundle(tmp_path / "ca" / identity.CA_CERT)
    path = tmp_path / "membership.json"
    path.write_bytes(sign(_doc(PROVINCE), key))
    source = MembershipSource(path, bundle)
    events: list[dict] = []
    source.on_event = events.append
    # the same document, its permissions changed or copied over itself: nothing to say
    # (a new stamp refused it as "replayed", review 2026-12-05)
    path.chmod(0o640)
    same = tmp_path / "same.json"
    same.write_bytes(path.read_bytes())
    same.replace(path)
    assert source().serial == 1 and events == []
    path.unlink()
    path.mkdir()  # as a document the node's user may not read: open() fails
    for _ in range(3):
        assert source().serial == 1
    assert [e["kind"] for e in events] == ["membership.refused"]
    assert "cannot be read" in events[0]["reason"]
    path.rmdir()
    path.write_bytes(sign(Membership("test", 2, "2026-01-01T00:00:00Z", (PROVINCE, CITY)), key))
    assert source().serial == 2
    assert events[-1]["kind"] == "membership.reloaded"
