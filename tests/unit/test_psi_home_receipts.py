"""The home's check of a PSI answer's receipts (review, 2026-12-04): each side's receipt
was checked for its signer, owner and request, but the matcher's was not tied to what it
answered: another table, or another intersection count, could come beside the receipt of
what it released. Real receipts signed by two nodes' CA-issued keys, the real check."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from federation.partials import to_ipc
from federation.psi import frames as f
from federation.reports import OwnerReport
from gateway import identity
from gateway.errors import FailedPrecondition
from gateway.planning import join_or_refuse
from gateway.receipt_store import ReceiptStore
from gateway.receipts import ReceiptCheck, Signer, digest
from gateway.roles.psi_home import PsiHome, PsiSideAsk, psi_sql
from gateway.state import State

REQUEST = "r-psi-1"
TABLE = b"the matcher's released table"


def _signer(ca: Path, tmp: Path, node: str) -> Signer:
    key_pem, csr = identity.make_csr("node", node, f"{node} bureau", ["127.0.0.1"])
    identity.write_private(tmp / f"{node}.key", key_pem)
    return Signer(identity.load_key(tmp / f"{node}.key"), identity.sign_csr(ca, csr))


def _receipt(signer: Signer, node: str, payload: bytes, **facts: object) -> str:
    return signer.sign(_body(node, payload, **facts)).to_json()


def _body(node: str, payload: bytes, **facts: object) -> dict:
    return {
        "kind": "release",
        "owner": node,
        "request_id": REQUEST,
        "operation": "psi",
        "result_digest": digest(payload),
        "audit_seq": 7,
        "audit_hash": "0" * 64,
        **facts,
    }


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[tuple[PsiHome, dict[str, Signer]]]:
    ca = tmp_path / "ca"
    identity.init_ca(ca)
    bundle = identity.load_bundle(ca / identity.CA_CERT)
    state = State(tmp_path / "state.sqlite3")
    store = ReceiptStore(state, ReceiptCheck(bundle))
    home = PsiHome("shanghai", lambda: None, None, None, store)  # type: ignore[arg-type]
    yield home, {n: _signer(ca, tmp_path, n) for n in ("anhui", "jiangsu")}
    state.close()


def _answer(s: dict[str, Signer], payload: bytes, intersection: int, said: int) -> f.PsiAnswer:
    matcher = _receipt(s["anhui"], "anhui", TABLE, intersection=said)
    other = _receipt(s["jiangsu"], "jiangsu", b"the other side's own release")
    owners = (OwnerReport("anhui", receipt=matcher), OwnerReport("jiangsu", receipt=other))
    return f.PsiAnswer(REQUEST, intersection, intersection < 0, 5, owners, payload=payload)


def test_the_matchers_receipt_names_the_answers_bytes_and_count(
    parts: tuple[PsiHome, dict[str, Signer]],
) -> None:
    home, signers = parts
    plan = join_or_refuse(
        psi_sql(PsiSideAsk("anhui", "a", "code"), PsiSideAsk("jiangsu", "b", "code"))
    )
    assert plan.sides[plan.matcher].node == "anhui"
    home._check_receipts(_answer(signers, TABLE, 12, 12), plan)  # what it released: taken
    with pytest.raises(FailedPrecondition) as other_bytes:
        home._check_receipts(_answer(signers, b"another table", 12, 12), plan)
    assert str(other_bytes.value) == (
        "owner anhui released without a valid receipt: its result digest is not the digest "
        "of the reply it came with"
    )
    with pytest.raises(FailedPrecondition) as other_count:
        home._check_receipts(_answer(signers, TABLE, 13, 12), plan)
    assert "it names another intersection than the one answered" in str(other_count.value)


def test_a_grouped_answers_intersection_is_the_total_of_its_tables_counts(
    parts: tuple[PsiHome, dict[str, Signer]],
) -> None:
    """With groups the receipt names the table's bytes but no count: the answer's
    intersection (written into the home's psi.answered) must be what those bytes hold."""
    home, signers = parts
    plan = join_or_refuse(
        "SELECT a.sector, COUNT(*) AS n FROM anhui.a a JOIN jiangsu.b b "
        "ON a.code = b.code GROUP BY a.sector"
    )
    table = to_ipc(pa.table({"sector": ["x", "y"], "n": pa.array([12, 30], pa.int64())}))

    def answer(intersection: int) -> f.PsiAnswer:
        matcher = signers["anhui"].sign(_body("anhui", table)).to_json()
        other = signers["jiangsu"].sign(_body("jiangsu", b"sums")).to_json()
        owners = (OwnerReport("anhui", receipt=matcher), OwnerReport("jiangsu", receipt=other))
        return f.PsiAnswer(REQUEST, intersection, False, 5, owners, payload=table)

    assert plan.sides[plan.matcher].node == "anhui"
    home._check_receipts(answer(42), plan)
    with pytest.raises(FailedPrecondition, match="another intersection than the one answered"):
        home._check_receipts(answer(43), plan)
