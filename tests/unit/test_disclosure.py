"""The disclosure report, built from a real grant store and audit log, and its renderings."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from google.protobuf import json_format

from federation.membership import Member, Membership
from gateway import disclosure, identity, serde
from gateway.audit import AuditLog
from gateway.disclosure import DisclosedGrant, DisclosedUsage, DisclosureReport
from gateway.policy.model import Grant
from gateway.policy.store import GrantStore
from gateway.state import State


@dataclass
class Parts:
    grants: GrantStore
    audit: AuditLog


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[Parts]:
    state = State(tmp_path / "state.sqlite3")
    try:
        yield Parts(GrantStore(state), AuditLog(state, "wuhu", identity.new_key(), b""))
    finally:
        state.close()


def _grant(parts: Parts, dataset: str, kind: str, grantee: str, **more: object) -> Grant:
    fields: dict = {
        "id": "",
        "dataset": dataset,
        "grantee_kind": kind,
        "grantee": grantee,
        "operations": ("query",),
        "columns": {"city": ("group_by", "filter"), "revenue": ("aggregate",)},
        "min_group_size": 5,
        "purpose": "industry | report <2026>",
        "valid_from": "2026-01-01T00:00:00Z",
    }
    fields.update(more)
    return parts.grants.add(Grant(**fields))


def _used(parts: Parts) -> None:
    for body in (
        {"kind": "release", "time": "2026-02-01T00:00:00Z", "epsilon": 0.25},
        {"kind": "release", "time": "2026-03-01T00:00:00Z", "epsilon": 0.5},
        {"kind": "release", "time": "2026-03-02T00:00:00Z", "dry_run": True},
        {"kind": "query.refused", "time": "2026-03-03T00:00:00Z"},
    ):
        parts.audit.append({"dataset": "firms", "requester_org": "上海 Big Data Center", **body})
    parts.audit.append({"kind": "release", "time": "2026-03-01T00:00:00Z", "dataset": "core"})
    parts.audit.append({"kind": "grant.written", "time": "2026-03-01T00:00:00Z"})


def test_grants_and_usage_without_persons_or_hidden_datasets(parts: Parts) -> None:
    org_grant = _grant(parts, "firms", "org", "Anhui bureau")
    user_grant = _grant(parts, "firms", "user", "li.wei@shanghai", expires="2030-01-01T00:00:00Z")
    _grant(parts, "core", "node", "anhui")
    _used(parts)
    r = disclosure.build("wuhu", "Wuhu bureau", parts.grants, parts.audit, "", "", {"core"})
    assert (r.node, r.org, r.since, r.until) == ("wuhu", "Wuhu bureau", "", "")
    shown = {g.id: g for g in r.grants}  # the store lists grants by id
    assert {i: g.grantee_org for i, g in shown.items()} == {
        org_grant.id: "Anhui bureau",
        user_grant.id: "a user at shanghai",
    }
    org_shown, user_shown = shown[org_grant.id], shown[user_grant.id]
    assert org_shown.columns == (("city", ("group_by", "filter")), ("revenue", ("aggregate",)))
    assert org_shown.status == "active" and user_shown.expires == "2030-01-01T00:00:00Z"
    assert r.usage == (DisclosedUsage("firms", "上海 Big Data Center", 3, 2, 1, 0.75),)
    since = disclosure.build("wuhu", "W", parts.grants, parts.audit, "2026-02-15", "", {"core"})
    assert since.usage == (DisclosedUsage("firms", "上海 Big Data Center", 2, 1, 1, 0.5),)


def test_refusals_of_every_operation_count_but_not_made_up_names(parts: Parts) -> None:
    """Review (2026-12-04): any analyst's refused request for a dataset the node never
    held added a row to the public report; a PSI or training refusal counts as a query's;
    a dry run's refusal does not."""
    _grant(parts, "firms", "org", "Anhui bureau")
    parts.audit.append({"kind": "dataset.registered", "dataset": "roads", "level": "L1"})
    for kind, dataset, dry in (
        ("query.refused", "nosuch_ds", False),
        ("psi.refused", "firms", False),
        ("train.refused", "roads", False),
        ("query.refused", "roads", True),
    ):
        body = {"kind": kind, "time": "2026-03-03T00:00:00Z", "dataset": dataset}
        parts.audit.append({**body, "requester_org": "SBDC", "dry_run": dry})
    r = disclosure.build("wuhu", "W", parts.grants, parts.audit, "", "", set())
    assert r.usage == (
        DisclosedUsage("firms", "SBDC", 1, 0, 1, 0.0),
        DisclosedUsage("roads", "SBDC", 1, 0, 1, 0.0),
    )


def test_the_wire_and_back_keep_every_field(parts: Parts) -> None:
    _grant(parts, "firms", "user", "li.wei@shanghai", grantee_org="Shanghai center")
    _used(parts)
    r = disclosure.build("wuhu", "Wuhu bureau", parts.grants, parts.audit, "2026", "2027")
    assert serde.disclosure_report_from_proto(serde.disclosure_report_to_proto(r)) == r


def test_json_is_what_json_format_printed(parts: Parts) -> None:
    _grant(parts, "firms", "org", "Anhui bureau")
    _grant(parts, "firms", "user", "li.wei@shanghai", expires="2030-01-01T00:00:00Z")
    _used(parts)
    r = disclosure.build("wuhu", "Wuhu bureau", parts.grants, parts.audit, "", "2027-01-01")
    wire = serde.disclosure_report_to_proto(r)
    before = json.dumps(
        json_format.MessageToDict(wire, preserving_proto_field_name=True),
        indent=2,
        ensure_ascii=False,
    )
    assert disclosure.to_json(serde.disclosure_report_from_proto(wire)) == before
    core, firms = json.loads(before)["usage"]
    assert firms["requests"] == "3" and firms["epsilon_spent"] == 0.75  # int64 as text
    assert core == {"dataset": "core", "requests": "1", "releases": "1"}  # zeros left out
    empty = DisclosureReport("n", "o", "2026-01-01T00:00:00Z", "", "")
    assert json.loads(disclosure.to_json(empty)) == {
        "node": "n",
        "org": "o",
        "generated_at": "2026-01-01T00:00:00Z",
    }


def test_markdown_and_html() -> None:
    r = DisclosureReport(
        node="wuhu",
        org="Wuhu bureau",
        generated_at="2026-04-01T00:00:00Z",
        since="",
        until="",
        grants=(
            DisclosedGrant(
                id="g-1",
                grantee_org="a user at shanghai",
                grantee_kind="user",
                dataset="firms",
                columns=(("city", ("group_by", "filter")), ("revenue", ("aggregate",))),
                operations=("query", "psi"),
                valid_from="",
                expires="",
                purpose="a | b <c>",
                status="active",
            ),
        ),
        usage=(DisclosedUsage("firms", "Shanghai", 3, 2, 1, 0.75),),
    )
    md = disclosure.to_markdown(r)
    assert md.splitlines()[:3] == [
        "# Data-sharing disclosure: Wuhu bureau (node wuhu)",
        "",
        "Generated 2026-04-01T00:00:00Z. Usage period: the start to 2026-04-01T00:00:00Z.",
    ]
    assert (
        "| a user at shanghai | firms | city: group_by, filter; revenue: aggregate | query, psi "
        "| - to no expiry | a \\| b &lt;c&gt; | - | active |"
    ) in md
    assert "| firms | Shanghai | 3 | 2 | 1 | 0.75 |" in md and md.endswith("|\n")
    page = disclosure.to_html(r)
    assert "<td>a | b &lt;c&gt;</td>" in page and "<td>0.75</td>" in page
    assert page.startswith("<!doctype html>") and page.endswith("</html>\n")


def test_a_purpose_cannot_rewrite_the_markdown_report() -> None:
    """Review (2026-12-04): a purpose with newlines and ``<!--`` published a fake notice
    and hid every later row. Such a purpose is refused where it enters, and a cell is one
    line without the writer's markup wherever it came from."""
    from gateway.errors import InvalidArgument
    from gateway.text import markdown_cell, plain

    evil = "regional report\n\n**Notice:** all grants were revoked\n\n<!--"
    with pytest.raises(InvalidArgument, match="control or invisible character"):
        plain(evil, "the purpose")
    with pytest.raises(InvalidArgument, match="U\\+200B"):
        plain("\u200b", "the purpose")  # a zero-width purpose is no stated purpose
    cell = markdown_cell(evil)
    assert "\n" not in cell and "<!--" not in cell and "&lt;\\!--" in cell
    linked = markdown_cell("see ![x](https://t.example/p.png) or [official](https://e.example)")
    assert "![" not in linked and "](" not in linked  # no image, no link of the writer's


def test_refusals_count_for_held_datasets_only(parts: Parts) -> None:
    """Refusals name whatever the caller asked for: names a caller planted are not in the
    report (nor held while it is built); a dataset the node holds without any grant is."""
    for i in range(300):
        parts.audit.append(
            {"kind": "psi.refused", "time": "2026-03-01T00:00:00Z", "dataset": f"planted{i}"}
        )
    parts.audit.append(
        {"kind": "query.refused", "time": "2026-03-01T00:00:00Z", "dataset": "ungranted"}
    )
    r = disclosure.build("wuhu", "W", parts.grants, parts.audit, "", "", set(), {"ungranted"})
    assert [(u.dataset, u.refusals) for u in r.usage] == [("ungranted", 1)]
    r = disclosure.build("wuhu", "W", parts.grants, parts.audit, "", "", set())
    assert r.usage == ()


# A peer's own words in a report's header: a terminal escape that clears the screen and
# retitles the window, a bidi override, a line break that starts a heading of its own.
HOSTILE = "Wuhu\x1b[2J\x1b]0;owned\x07 \u202ebureau\r\n# Notice"


def test_the_markdown_header_escapes_what_a_peer_wrote() -> None:
    """Review (2026-12-05): the table cells were escaped, the header (org, node, times)
    went out as the peer sent it, to the reader's terminal."""
    r = DisclosureReport(
        node=HOSTILE, org=HOSTILE, generated_at=HOSTILE, since=HOSTILE, until=HOSTILE
    )
    md = disclosure.to_markdown(r)
    assert not any(c in md for c in "\x1b\x07\r\u202e")
    lines = md.splitlines()
    assert lines[0].startswith(r"# Data-sharing disclosure: Wuhu\\u001b\[2J")
    assert lines[1] == "" and lines[2].startswith(r"Generated Wuhu\\u001b")
    assert [x for x in lines if x.startswith("#")] == [lines[0], "## Grants", "## Usage"]


class _Transport:
    """A member's PeerDisclosure answer, as it chose to write it."""

    def __init__(self, node: str) -> None:
        self.node = node

    def call(self, member: Member, method: str, request: object, **_: object) -> object:
        assert method == "PeerDisclosure"
        return serde.disclosure_report_to_proto(
            DisclosureReport(node=self.node, org="o", generated_at="", since="", until="")
        )


def _forwarding(answered: str):  # type: ignore[no-untyped-def]
    """A home (anhui) whose member wuhu answers PeerDisclosure as ``answered``."""
    from gateway.roles.forwarding import Forwarding

    members = tuple(Member(m, m.upper(), "127.0.0.1:1", "province") for m in ("anhui", "wuhu"))
    return Forwarding(
        "anhui",
        lambda: Membership("f", 1, "2026-01-01T00:00:00Z", members),
        _Transport(answered),  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]  # access requests: not used here
        None,  # type: ignore[arg-type]  # the audit log: not used here
        lambda since, until: pytest.fail("not this node's report"),
    )


@pytest.mark.parametrize("answered", ["jiangsu", "x" * 5000])
def test_the_home_passes_on_a_members_report_only_of_that_member(answered: str) -> None:
    """Review (2026-12-05): the home passed on whatever report the member asked sent, in
    another member's name too (the federated catalog refuses it: "answered as")."""
    from gateway.errors import FailedPrecondition

    with pytest.raises(
        FailedPrecondition, match=r"member 'wuhu' answered as '(jiangsu|x+\.\.\.\[cut)"
    ):
        _forwarding(answered).disclosure("wuhu", "", "")
    assert _forwarding("wuhu").disclosure("wuhu", "", "").node == "wuhu"


def test_the_cli_names_the_reported_node_escaped(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--out``'s line on stderr names the node the report says it is, a peer's text."""
    import gateway.client
    from gateway.cli import disclosure as cli_disclosure
    from gateway.cli.app import main

    class Client:
        def __init__(self, *_: object, **__: object) -> None:
            pass

        def __enter__(self) -> Client:
            return self

        def __exit__(self, *_: object) -> None:
            pass

        def disclosure(self, *_: object) -> object:
            return serde.disclosure_report_to_proto(
                DisclosureReport(node=HOSTILE, org="o", generated_at="", since="", until="")
            )

    monkeypatch.setattr(gateway.client, "Client", Client)
    monkeypatch.setattr(cli_disclosure, "profile", lambda _args: None)
    assert main(["disclosure", "--node", "wuhu", "--out", str(tmp_path / "r.md")]) == 0
    err = capsys.readouterr().err
    assert err.startswith("disclosure report of Wuhu\\u001b[2J") and err.count("\n") == 1
    assert not any(c in err for c in "\x1b\x07\r\u202e")
