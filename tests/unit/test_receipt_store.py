"""The receipts a home keeps (review, 2026-12-04): only each owner's own release receipt
for the request; anything else is named in the home's audit entry, not kept."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pytest

from federation.envelope import Envelope
from federation.fanout import Outcome
from federation.gather import gather
from federation.membership import Member, Membership
from federation.outcome import Code
from federation.partials import from_ipc, to_ipc
from federation.reports import OwnerReport, PartialAnswer
from federation.sql import parse
from gateway import receipts
from gateway.errors import FailedPrecondition, InvalidArgument
from gateway.receipt_store import ReceiptStore
from gateway.receipts import ReceiptCheck
from gateway.roles.home import Home, QueryAsk
from tests.unit.test_home import _Vouching
from tests.unit.test_owner import ANALYST, SQL, Parts, _env, _grant


def test_a_home_keeps_only_each_owners_receipt_for_the_request(parts: Parts) -> None:
    _grant(parts, exact=True)
    env = _env()
    good = parts.owner.execute(env).owners[0].receipt
    again = dataclasses.replace(_env(), request_id="r-2")
    other = parts.owner.execute(again).owners[0].receipt  # another request's, also signed
    store = ReceiptStore(parts.state, ReceiptCheck(parts.bundle))
    body = json.loads(good)
    body["body"]["groups_released"] = 99  # a relay's forgery: the signature no longer holds
    forged = json.dumps(body)
    given = [("anhui", good), ("wuhu", good), ("anhui", other), ("bengbu", "garbage")]
    given += [("anhui", forged)]
    store.keep(env.request_id, given, {"kind": "query.answered", "request_id": env.request_id})
    assert store.for_request(env.request_id) == [good]
    entry = [e for e in parts.audit.entries() if e.data["kind"] == "query.answered"][-1]
    assert entry.data["bad_receipts"] == {
        "wuhu": "it names another owner",
        "anhui": "its signature does not verify",
        "bengbu": "not a fedgate receipt: not JSON",
    }


def test_a_signed_statement_that_is_no_release_is_no_receipt(parts: Parts) -> None:
    """A node signs SecAgg+ keys and model digests with the same key: such a statement
    verified as "receipt OK" before."""
    statement = parts.owner.pipeline.signer.sign({"owner": "anhui", "kind": "secagg.keys"})
    with pytest.raises(InvalidArgument, match="not a release receipt"):
        receipts.verify(statement, parts.bundle)
    check = ReceiptCheck(parts.bundle)
    assert check.problem(statement.to_json(), "anhui", "r") == "not a release receipt"
    assert json.loads(statement.to_json())["body"]["kind"] == "secagg.keys"


def test_a_receipt_counts_only_while_its_signers_certificate_is_in_force(
    parts: Parts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review (2026-12-04): receipts and relayed requests were checked against the CA only.
    The door checks callers, so a revoked owner could still answer a home that called it;
    now what a node takes from a peer needs the signer's certificate in force."""
    from gateway import clock, identity

    _grant(parts, exact=True)
    env = _env()
    good = parts.owner.execute(env).owners[0].receipt
    crl = identity.RevocationList(tmp_path / "ca" / identity.CA_CRL, parts.bundle)
    crl.load()
    check = ReceiptCheck(parts.bundle, lambda c: identity.not_in_force(c, crl))
    assert check.problem(good, "anhui", env.request_id) == ""  # and its key is remembered
    pem = receipts.Receipt.from_json(good).cert_pem
    cert_serial = identity.identity_of_pem(pem.encode()).serial
    identity.revoke(tmp_path / "ca", int(cert_serial, 16))
    assert check.problem(good, "anhui", env.request_id) == (
        f"signer certificate {cert_serial} has been revoked"
    )
    fresh = ReceiptCheck(parts.bundle, lambda c: identity.not_in_force(c, crl))
    assert "has been revoked" in fresh.problem(good, "anhui", env.request_id)
    # Kept as evidence (it was checked in force as it arrived): a revocation since, or a
    # CRL past its next update, drops no receipt of what the owner did release.
    for checker in (check, fresh):
        assert checker.problem(good, "anhui/3", env.request_id, live=False) == ""
    # Expired: five years on (the CA signs for one), told before any question of the CRL.
    later = clock.now() + dt.timedelta(days=5 * 365)
    monkeypatch.setattr(clock, "now", lambda: later)
    unrevoked = ReceiptCheck(parts.bundle, lambda c: identity.not_in_force(c, None))
    assert f"signer certificate {cert_serial} expired at" in unrevoked.problem(
        good, "anhui", env.request_id
    )
    # Kept evidence checked offline is what it was when signed.
    assert receipts.verify(receipts.Receipt.from_json(good), parts.bundle) == "anhui"


def test_a_psi_answer_counts_only_with_each_sides_receipt_in_force(
    parts: Parts, tmp_path: Path
) -> None:
    """Review (2026-12-04): the home of a PSI session kept the receipts as evidence only
    (a forged one named under ``bad_receipts``, a missing one not at all, a revoked
    signer's kept) and gave the answer to the analyst. Each side named in the plan now
    needs its own receipt for the request, signed by a certificate in force."""
    from federation.psi import frames as f
    from federation.reports import OwnerReport
    from gateway import identity
    from gateway.errors import FailedPrecondition
    from gateway.planning import join_or_refuse
    from gateway.roles.psi_home import PsiHome

    env = _env()
    # the matcher's own release receipt, of the answer it gives (no table here)
    release = {"kind": "release", "owner": "anhui", "request_id": env.request_id}
    release |= {"operation": "psi", "result_digest": receipts.digest(b"")}
    release |= {"audit_seq": 3, "audit_hash": "0" * 64}
    good = parts.owner.pipeline.signer.sign(release).to_json()
    body = json.loads(good)
    body["body"]["groups_released"] = 99
    forged = json.dumps(body)
    plan = join_or_refuse("SELECT COUNT(*) AS n FROM anhui.l a JOIN miit.r b ON a.k = b.k")
    crl = identity.RevocationList(tmp_path / "ca" / identity.CA_CRL, parts.bundle)
    crl.load()
    check = ReceiptCheck(parts.bundle, lambda c: identity.not_in_force(c, crl))
    home = PsiHome("anhui", None, None, None, ReceiptStore(parts.state, check))  # type: ignore[arg-type]

    def answer(*owners: OwnerReport) -> f.PsiAnswer:
        return f.PsiAnswer(env.request_id, 12, False, 5, owners)

    def refused(given: f.PsiAnswer) -> str:
        with pytest.raises(FailedPrecondition) as err:
            home._check_receipts(given, plan)
        return err.value.message

    assert refused(answer(OwnerReport("anhui", receipt=good), OwnerReport("miit"))) == (
        "owner miit released without a valid receipt: none was sent"
    )
    assert refused(answer(OwnerReport("anhui", receipt=good))).startswith("owner miit")
    assert refused(answer(OwnerReport("anhui", receipt=forged))) == (
        "owner anhui released without a valid receipt: its signature does not verify"
    )
    assert refused(answer(OwnerReport("anhui", receipt=good), OwnerReport("miit", receipt=good)))
    pem = receipts.Receipt.from_json(good).cert_pem
    identity.revoke(tmp_path / "ca", int(identity.identity_of_pem(pem.encode()).serial, 16))
    assert "has been revoked" in refused(answer(OwnerReport("anhui", receipt=good)))


def test_a_partial_counts_only_with_the_receipt_of_its_very_bytes(parts: Parts) -> None:
    """Review (2026-12-04): a query partial's receipt was checked for its signer, owner and
    request but not tied to the bytes it came with, so an owner (or anyone between) could
    send other numbers beside a receipt of what it released. The home's and a relay's
    check (``gather`` with ``ReceiptCheck``) now merges a lone release only if the receipt
    names the digest of exactly its bytes."""
    _grant(parts, exact=True)
    env = _env()
    answer = parts.owner.execute(env)
    assert answer.payload and answer.owners[0].ok
    table = from_ipc(answer.payload)
    i = next(i for i, f in enumerate(table.schema) if pa.types.is_integer(f.type))
    counts = pa.array([v + 1 for v in table.column(i).to_pylist()], table.schema.field(i).type)
    other = to_ipc(table.set_column(i, table.schema.field(i), counts))  # a valid partial
    check = ReceiptCheck(parts.bundle)

    def problem(node: str, receipt: str, payload: bytes | None) -> str:
        covering = None if payload is None else (payload, "query")
        return check.problem(receipt, node, env.request_id, covering=covering)

    plan = parse(SQL)
    for _ in range(2):  # the second time its signature is remembered: still tied to bytes
        kept = gather(plan, [_outcome(answer)], receipt_problem=problem)
        assert len(kept.tables) == 1 and kept.owners[0].ok
        forged = dataclasses.replace(answer, payload=other)
        dropped = gather(plan, [_outcome(forged)], receipt_problem=problem)
        assert not dropped.tables
        error = dropped.owners[0].error
        assert error is not None and error.code is Code.FAILED_PRECONDITION
        assert error.reason == (
            "anhui sent a partial without a valid receipt of anhui: its result digest is not "
            "the digest of the reply it came with"
        )
    train = check.problem(
        answer.owners[0].receipt, "anhui", env.request_id, covering=(answer.payload, "train")
    )
    assert train == "it is the receipt of another operation, not train"


def test_a_receipt_must_name_the_request_as_the_home_asked_it(parts: Parts) -> None:
    """Review (2026-12-05): the home checked a receipt's owner, request id, signature and
    bytes, not what it released: a relay could have a city release a request of its own
    (another requester, purpose or SQL) under the home's request id, and the home merged
    it for its analyst. Now the receipt must name the home, requester, purpose, plan and
    dataset the home asked."""
    from gateway.receipts import query_asked

    _grant(parts, exact=True)
    env = _env()
    answer = parts.owner.execute(env)
    receipt = answer.owners[0].receipt
    check = ReceiptCheck(parts.bundle)
    plan = parse(SQL)
    covering = (answer.payload, "query")
    asked = query_asked(env, plan)
    for _ in range(2):  # the second time its signature is remembered: still checked
        assert check.problem(receipt, "anhui", env.request_id, covering=covering, asked=asked) == ""
    other = dataclasses.replace(env, purpose="something else")
    said = check.problem(
        receipt, "anhui", env.request_id, covering=covering, asked=query_asked(other, plan)
    )
    assert said == "it names another purpose than the one asked"
    wider = parse(SQL.replace("GROUP BY", "WHERE revenue > 0 GROUP BY"))
    assert wider.digest != plan.digest
    said = check.problem(
        receipt, "anhui", env.request_id, covering=covering, asked=query_asked(env, wider)
    )
    assert said == "it names another plan digest than the one asked"


def _outcome(answer: PartialAnswer) -> Outcome:
    @dataclasses.dataclass(frozen=True)
    class Target:
        id: str

    return Outcome(Target(answer.node_id), answer, None, 0.0)


def test_a_page_of_receipts_is_bounded_in_bytes_not_characters(parts: Parts) -> None:
    """Review (2026-12-05): a receipt is kept as its owner sent it, and the page counted
    characters: receipts padded with non-ASCII text made a page twice its byte limit."""
    store = ReceiptStore(parts.state, ReceiptCheck(parts.bundle))
    padded = json.dumps({"pad": "\u6c5f" * 1000}, ensure_ascii=False)  # 3 bytes a character
    with parts.state.transaction() as db:
        for i in range(30):
            db.execute(
                "INSERT INTO receipts VALUES ('r-1', ?, ?, '2026-12-05T00:00:00Z')",
                (f"owner{i}", padded),
            )
    limit = 10_000
    seen: list[str] = []
    page, after = store.page("r-1", 0, limit)
    while True:
        assert sum(len(r.encode()) + 8 for r in page) <= limit or len(page) == 1
        seen.extend(page)
        if not after:
            break
        page, after = store.page("r-1", after, limit)
    assert len(seen) == 30


DEEP = "[" * 2000 + "]" * 2000  # ~4 KB of JSON nested past Python's recursion limit


@pytest.mark.parametrize("allow_partial", [True, False])
def test_a_receipt_nested_too_deep_fails_its_owner_not_the_query(
    parts: Parts, allow_partial: bool
) -> None:
    """Review (2026-12-05): an owner's receipt of ~2 000 levels of "[" raised RecursionError
    out of the home's receipt check, where only bad JSON was caught: the query failed
    INTERNAL, also with --allow-partial, and the home wrote no entry for it. It is now a
    receipt that is not JSON: its owner fails, the others answer, the entry is written."""
    _grant(parts, exact=True)
    members = Membership(
        "f",
        1,
        "2026-01-01T00:00:00Z",
        tuple(Member(m, m, "127.0.0.1:1", "province") for m in ("anhui", "evil")),
    )

    def ask(member: Member, env: Envelope) -> PartialAnswer:
        if member.id == "anhui":
            return parts.owner.execute(env)
        if env.check:  # the check round: evil would answer
            return PartialAnswer("evil", True, owners=(OwnerReport("evil"),))
        # a partial that fits the plan (anhui's own, of another request), its receipt deep
        bytes_ = parts.owner.execute(dataclasses.replace(env, request_id="r-evil")).payload
        return PartialAnswer(
            "evil", True, payload=bytes_, owners=(OwnerReport("evil", receipt=DEEP),)
        )

    store = ReceiptStore(parts.state, ReceiptCheck(parts.bundle))
    with ThreadPoolExecutor(2) as pool:
        home = Home(
            "shanghai",
            lambda: members,
            _Vouching(),  # type: ignore[arg-type]
            ask,
            pool,
            store,
            parts.engine.run_on_table,
            1 << 22,
        )
        ask_ = QueryAsk(SQL, allow_partial=allow_partial)
        if allow_partial:
            answer = home.query(ask_, ANALYST, time.monotonic() + 30)
            assert answer.missing == ("evil",) and answer.payload
        else:
            with pytest.raises(FailedPrecondition, match="receipt of evil: not a fedgate rec"):
                home.query(ask_, ANALYST, time.monotonic() + 30)
    entry = parts.audit.entries()[-1].data
    assert entry["kind"] == ("query.answered" if allow_partial else "query.failed")
    assert entry["bad_receipts"] == {"evil": "not a fedgate receipt: not JSON"}
