"""Replay of an owner's audit log against its grants: what an auditor checks offline.

Every release entry names its grant and the epsilon it was charged; every grant's
limits are in its ``grant.written`` entry, and its revocation is an entry of its own.
Replayed in the log's order with the node's own arithmetic (``policy.budget``: charges on
a 1e-12 grid), no release may come under a grant never written here, after its
revocation, before it was valid or past its expiry, for another dataset,
operation, grantee or purpose than the grant's, beyond its ``max_uses`` or beyond its DP budget
(review, 2026-12-04: ``audit verify`` checked the chain and the signatures only).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from federation.canonical import canonical, loads
from federation.envelope import Requester
from gateway.clock import utc
from gateway.policy.budget import add_epsilon, within_budget
from gateway.policy.decide import matches, purpose_matches
from gateway.policy.model import Grant

KINDS = ("grant.written", "grant.revoked", "release")
SLACK = dt.timedelta(seconds=5)  # a release is stamped a moment after its grant's check
MAX_JUDGED = 4096  # (grant, what a release asked) pairs whose coverage is remembered


@dataclass
class _Held:
    grant: Grant
    # What a covered release's body holds, as canonical JSON pairs: each of ``required``
    # and one of ``either`` (empty: none needed). None: judged field by field (user
    # grants, grants with a purpose).
    required: tuple[str, ...] | None
    either: tuple[str, ...] = ()
    pending: list[tuple[int, str]] = field(default_factory=list)  # releases to judge
    start: dt.datetime | None = None  # the grant's valid_from and expires as instants
    end: dt.datetime | None = None
    uses: int = 0
    spent: float = 0.0
    revoked: bool = False


def _pair(key: str, value: str) -> str:
    return canonical({key: value})[1:-1]  # '"key":"value"', escaped as the log writes it


def _held(g: Grant) -> _Held:
    """A quoted pair cannot occur inside a string value of canonical JSON (its quotes
    would be escaped there), so finding each in a body is finding the field's value."""
    if g.grantee_kind not in ("org", "node") or g.purpose:
        return _Held(g, None)
    who = "requester_org" if g.grantee_kind == "org" else "home_node"
    ops = tuple(_pair("operation", o) for o in g.operations)
    required = (_pair("dataset", g.dataset), _pair(who, g.grantee))  # the dataset first
    if len(ops) == 1:
        return _Held(g, (*required, *ops))
    return _Held(g, required, ops)


class Malformed(Exception):
    """An entry the replay reads cannot be read as the node writes it: not a JSON
    object, or a field of another type or form (the message names the entry and field).
    The verifier reports it as its own typed error, never a traceback."""


def _time(text: str) -> dt.datetime:
    """A time as the node writes it (``clock.utc``): timezone-aware; ValueError otherwise
    (a time without a zone cannot be compared with one that has it)."""
    at = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if at.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone")
    return at


def _object(seq: int, kind: str, body: str) -> dict[str, object]:
    try:
        e = loads(body)
    except ValueError:  # also an integer of over 4 300 digits
        raise Malformed(f"entry {seq} ({kind}) cannot be read: its body is not JSON") from None
    if not isinstance(e, dict):
        raise Malformed(f"entry {seq} ({kind}) cannot be read: its body is not a JSON object")
    return e


_MAX_USES = 2**63 - 1  # the largest count the node's state can hold


def _grant(seq: int, e: dict[str, object]) -> tuple[Grant, dt.datetime | None, dt.datetime | None]:
    """The grant as its ``grant.written`` entry states it (``policy.model.public_fields``),
    with its period as instants. A field the node would never have written so -- a count
    that is not a whole number from 0, a budget that is not a finite number from 0, a time
    not in the node's form (``clock.utc``), text or a list of another type -- raises
    Malformed naming the entry and the field (review, 2026-12-05: "max_uses": 1e999 or
    "valid_from": "garbage" stopped ``audit verify`` with a traceback). A field left out
    takes the grant's default, as before."""

    def bad(key: str, what: str) -> Malformed:
        shown = json.dumps(e[key])  # as the log has it, shortened
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
        return Malformed(f"grant.written {seq} has {key} {shown}, not {what}")

    def text(key: str) -> str:
        v = e.get(key, "")
        if not isinstance(v, str):
            raise bad(key, "text")
        return v

    def when(key: str) -> tuple[str, dt.datetime | None]:
        v = text(key)
        if not v:
            return "", None
        try:
            at = _time(v)
            same = utc(at) == v  # the node writes one form: the replay compares text too
        except (ValueError, OverflowError):  # no time; out of range once in UTC
            same = False
        if not same:
            raise bad(key, "a time (UTC, as 2026-12-04T10:00:00Z)")
        return v, at

    uses = e.get("max_uses", 0)
    if isinstance(uses, bool) or not isinstance(uses, int) or not 0 <= uses <= _MAX_USES:
        raise bad("max_uses", "a whole number of uses from 0")
    budget = e.get("dp_budget", 0.0)
    spend = math.nan  # not a number, a bool; inf and nan (JSON allows them)
    if isinstance(budget, int | float) and not isinstance(budget, bool):
        with contextlib.suppress(OverflowError):  # an int too large for a float
            spend = float(budget)
    if not (math.isfinite(spend) and spend >= 0):
        raise bad("dp_budget", "a finite number from 0")
    ops = e.get("operations", [])
    if not isinstance(ops, list) or not all(isinstance(o, str) for o in ops):
        raise bad("operations", "a list of operations")
    valid_from, start = when("valid_from")
    expires, end = when("expires")
    grant = Grant(
        id=text("grant_id"),
        dataset=text("dataset"),
        grantee_kind=text("grantee_kind"),
        grantee=text("grantee"),
        grantee_org=text("grantee_org"),
        operations=tuple(ops),
        columns={},
        min_group_size=0,
        purpose=text("purpose"),
        valid_from=valid_from,
        expires=expires,
        max_uses=uses,
        dp_budget=spend,
    )
    return grant, start, end


def violations(entries: Iterable[tuple[int, str, str]]) -> list[str]:
    """``entries``: (seq, kind, body JSON) of the log's grant and release entries, in order.
    Returns what no grant covered, each naming the entry (empty when all is covered)."""
    grants: dict[str, _Held] = {}
    judged: dict[tuple[str, ...], str] = {}
    found: list[tuple[int, int, str]] = []  # (entry, 0 for what it asked / 1 for limits, text)
    for seq, kind, body in entries:
        if kind == "release":  # most of a log's entries: read without a parser
            _release(seq, body, grants, judged, found)
            continue
        e = _object(seq, kind, body)
        grant_id = e.get("grant_id", "")
        if not isinstance(grant_id, str):
            raise Malformed(f"{kind} {seq} has grant_id {json.dumps(grant_id)[:40]}, not text")
        if kind == "grant.written":
            if grant_id in grants:  # a node never reuses an id: a second one is forged
                found.append((seq, 0, f"grant {grant_id} is written again at entry {seq}"))
                continue  # judged by the first: a rewrite must not reset uses and budget
            grant, start, end = _grant(seq, e)
            written = grants[grant_id] = _held(grant)
            written.start, written.end = start, end
            continue
        held = grants.get(grant_id)
        if kind == "grant.revoked" and held is not None:
            _judge(held, judged, found)  # the releases before it were not after it
            held.revoked = True
    for held in grants.values():
        _judge(held, judged, found)
    return [text for _seq, _rank, text in sorted(found, key=lambda f: (f[0], f[1]))]


def _judge(held: _Held, judged: dict[tuple[str, ...], str], found: list) -> None:
    """Judge the releases kept for ``held``, in their order, a chunk at once: what each
    asked, when it was stamped, the grant's uses and budget. The common case is decided
    in C over the joined bodies: a pair of canonical JSON occurs at most once in a body
    (its key once; never inside a string, whose quotes are escaped), so a pair found as
    many times as there are bodies is in each of them. Anything else is judged release
    by release (``_one``)."""
    pending, held.pending = held.pending, []
    if not pending:
        return
    g = held.grant
    n = len(pending)
    joined = "\n" + "\n".join(body for _seq, body in pending)
    # A release's first key is its dataset and the next its epsilon (sorted keys): one
    # count finds both, the common "of this dataset, no epsilon charged".
    required = held.required
    plain = required is not None and joined.count(f"\n{{{required[0]},{_NO_EPSILON}") == n
    asked = required is not None and (
        all(joined.count(p) == n for p in required[1 if plain else 0 :])
        and (not held.either or sum(joined.count(p) for p in held.either) == n)
    )
    timely = True
    if g.valid_from or g.expires:
        # "time" is a release's last key (sorted), its value the fixed width of utc():
        # read at the end of each body; a body not ending so reads "" and is judged alone
        times = [b[-22:-2] if b[-30:-22] == _TIME else "" for _seq, b in pending]
        timely = (
            "" not in times  # a body whose time is not at its end (a training release's)
            and (not g.valid_from or min(times) >= g.valid_from)
            and (not g.expires or max(times) < g.expires)
        )
    free = plain or joined.count(_NO_EPSILON) == n  # no release charged an epsilon
    within = not g.max_uses or held.uses + n <= g.max_uses
    if asked and timely and free and within and not held.revoked:
        held.uses += n
        return
    for seq, body in pending:
        _one(held, seq, body, judged, found, asked=asked, timely=timely)


_EPSILON = '"epsilon":'
# The string fields a release is judged by, in the order canonical JSON (sorted keys)
# writes them, so each is looked for after the one before.
_FIELDS = (
    "dataset",
    "grant_id",
    "home_node",
    "operation",
    "purpose",
    "requester",
    "requester_org",
    "time",
)


_NEEDLES = tuple(f'"{name}":"' for name in _FIELDS)


def _strings(seq: int, body: str) -> tuple[str, ...]:
    """The release's ``_FIELDS`` from its canonical JSON (sorted keys, no spaces), each
    looked for after the one before; a body whose fields hold an escaped character, or
    are not where canonical JSON puts them, is parsed whole."""
    out = []
    at = 0
    for needle in _NEEDLES:
        start = body.find(needle, at)
        if start < 0:
            return _parsed(seq, body)
        start += len(needle)
        at = body.find('"', start)
        value = body[start:at]
        if "\\" in value:
            return _parsed(seq, body)
        out.append(value)
    return tuple(out)


def _parsed(seq: int, body: str) -> tuple[str, ...]:
    e = _object(seq, "release", body)
    return tuple(str(e.get(name, "")) for name in _FIELDS)


def _epsilon(body: str) -> float:
    start = body.find(_EPSILON)
    if start < 0:
        return 0.0
    start += len(_EPSILON)
    if body.startswith(("0.0,", "0,", "0.0}", "0}"), start):  # the common case, at once
        return 0.0
    comma, close = body.find(",", start), body.find("}", start)
    try:
        return float(body[start : close if comma < 0 or 0 <= close < comma else comma])
    except ValueError:
        return math.nan


_GRANT, _TIME = '"grant_id":"', '"time":"'


def _holds(body: str, held: _Held) -> bool:
    required = held.required
    if required is None:
        return False
    for needle in required:
        if needle not in body:
            return False
    return not held.either or any(n in body for n in held.either)


def _uncovered(held: _Held, fields: tuple[str, ...]) -> str:
    """Why the grant did not cover what the release asked ("" if it did), by the
    owner's own rules (``policy.decide``): its dataset, operation, grantee, purpose."""
    dataset, _grant_id, home_node, operation, purpose, requester, org, _time_ = fields
    g = held.grant
    if dataset != g.dataset:
        return f"of dataset {dataset!r}, not the grant's {g.dataset!r}"
    if operation not in g.operations:
        return f"a {operation!r} release, which the grant does not allow"
    role, _, user = requester.partition(":")
    if not matches(g, Requester(role, user, org), home_node):
        return f"for {requester} of {org!r} via {home_node!r}, not the grant's grantee"
    if not purpose_matches(g, purpose):
        return "for another purpose than the grant's"
    return ""


JUDGE_EVERY = 4096  # releases of one grant judged together (``_judge``)
_NO_EPSILON = '"epsilon":0.0,'  # canonical JSON of a release that charged none


def _release(
    seq: int,
    body: str,
    grants: dict[str, _Held],
    judged: dict[tuple[str, ...], str],
    found: list[tuple[int, int, str]],
) -> None:
    start = body.find(_GRANT) + len(_GRANT)  # _text, inlined: once a release
    grant_id = body[start : body.find('"', start)] if start >= len(_GRANT) else ""
    held = grants.get(grant_id)
    if held is None:
        never = f"release {seq} names grant {grant_id!r}, never written at this node"
        found.append((seq, 0, never))
        return
    held.pending.append((seq, body))
    if len(held.pending) >= JUDGE_EVERY:
        _judge(held, judged, found)


def _one(
    held: _Held,
    seq: int,
    body: str,
    judged: dict[tuple[str, ...], str],
    found: list[tuple[int, int, str]],
    *,
    asked: bool,
    timely: bool,
) -> None:
    """One release, in the log's order (``asked``, ``timely``: its chunk passed those)."""
    g = held.grant
    head = f"release {seq} under grant {g.id}"
    if not asked and not _holds(body, held):
        fields = _strings(seq, body)
        key = fields[:7]  # all but the time
        why = judged.get(key)
        if why is None:
            if len(judged) >= MAX_JUDGED:
                judged.clear()
            why = judged[key] = _uncovered(held, fields)
        if why:
            found.append((seq, 0, f"{head} is {why}"))
    if held.revoked:
        found.append((seq, 1, f"{head} after its revocation"))
    if not timely:
        at = body.rfind(_TIME) + len(_TIME)
        stamped = body[at : body.find('"', at)] if at >= len(_TIME) else ""
        for problem in _period(stamped, held):
            found.append((seq, 1, f"{head} {problem}"))
    held.uses += 1
    if g.max_uses and held.uses > g.max_uses:
        found.append((seq, 1, f"{head} beyond its {g.max_uses} uses"))
    epsilon = _epsilon(body)
    if not (math.isfinite(epsilon) and epsilon >= 0):
        found.append((seq, 1, f"{head} charged an epsilon of {epsilon}"))
    elif epsilon:
        if not within_budget(held.spent, epsilon, g.dp_budget):
            found.append((seq, 1, f"{head} beyond its DP budget"))
        held.spent = add_epsilon(held.spent, epsilon)


def _period(stamped: str, held: _Held) -> list[str]:
    """What is wrong with a release stamped ``stamped`` under a grant with a period (its
    times compared as instants: the cheap comparison of the text only picked it out).
    The slack is compared as a difference: ``expires`` + 5 s overflows in year 9999."""
    try:
        at = _time(stamped)
    except ValueError:  # also a time without a zone
        return ["has no time of release"]
    out = []
    if held.start is not None and at < held.start:
        out.append("before it was valid")
    if held.end is not None and at - held.end >= SLACK:
        out.append("after it expired")
    return out
