"""The node's audit trail: append-only, hash-chained, signed, verifiable offline.

Entry ``i`` stores its canonical JSON body and ``hash_i = H(seq_i | hash_{i-1} | H(body_i))``.
Each entry commits to everything before it, so changing, deleting, reordering or
inserting any entry changes every later hash. The node key signs the chain head (its
size and hash) in *checkpoints*: at most every ``checkpoint_every`` seconds when the log
grew, and always on export. One signature covers any number of entries, which is what
keeps appends fast; the hash chain makes each covered entry as good as signed.

Entries are written in the caller's SQLite transaction, so an entry and the state
change it describes (a grant's budget spent, a request approved) commit together: if
the log cannot be written, nothing happens and nothing is released.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from federation.canonical import canonical
from gateway.state import State, name_certificate

GENESIS = "0" * 64
FORMAT = "fedgate-audit-v1"


def body_digest(body_text: str) -> str:
    return hashlib.sha256(body_text.encode()).hexdigest()


def link(seq: int, prev_hash: str, digest: str) -> str:
    """The chain step; the verifier and witnesses compute exactly this."""
    return hashlib.sha256(f"{seq}|{prev_hash}|{digest}".encode()).hexdigest()


def head_message(node: str, size: int, head: str, time: str) -> bytes:
    return canonical(
        {"format": FORMAT, "node": node, "size": size, "head": head, "time": time}
    ).encode()


def sign_head(key: ec.EllipticCurvePrivateKey, node: str, size: int, head: str, time: str) -> str:
    sig = key.sign(head_message(node, size, head, time), ec.ECDSA(hashes.SHA256()))
    return base64.b64encode(sig).decode()


@dataclass(frozen=True)
class Entry:
    seq: int
    hash: str
    body: str  # canonical JSON text, exactly as hashed

    @property
    def data(self) -> dict:
        return json.loads(self.body)


@dataclass(frozen=True)
class Head:
    size: int
    hash: str
    time: str
    signature: str


class AuditLog:
    def __init__(
        self, state: State, node_id: str, key: ec.EllipticCurvePrivateKey, cert_pem: bytes
    ) -> None:
        """``cert_pem`` is the certificate of ``key``. Each signed head names it (its digest,
        the certificate kept once in ``audit_certs``), so an export shows every head with
        the certificate that signed it: after a renewal with a new key, the heads signed
        before no longer verified with the one certificate of the export's header
        (review, 2026-12-05)."""
        self._state = state
        self.node_id = node_id
        self._key = key
        self.cert_pem = cert_pem
        with state.transaction() as db:
            self._cert = name_certificate(db, "audit_heads", "audit_certs", cert_pem)

    # --- writing ----------------------------------------------------------------------

    @staticmethod
    def append_in(db: sqlite3.Connection, body: dict) -> Entry:
        """Append inside an open transaction; durable when that transaction commits."""
        row = db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        seq, prev = (row[0] + 1, row[1]) if row else (1, GENESIS)
        text = canonical(body)
        entry = Entry(seq, link(seq, prev, body_digest(text)), text)
        db.execute(
            "INSERT INTO audit (seq, hash, body, kind, request_id) VALUES (?, ?, ?, ?, ?)",
            (seq, entry.hash, text, body.get("kind", ""), body.get("request_id", "")),
        )
        return entry

    @staticmethod
    def append_many_in(db: sqlite3.Connection, bodies: list[dict]) -> Entry | None:
        row = db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        seq, prev = (row[0], row[1]) if row else (0, GENESIS)
        rows = []
        for body in bodies:
            seq += 1
            text = canonical(body)
            prev = link(seq, prev, body_digest(text))
            rows.append((seq, prev, text, body.get("kind", ""), body.get("request_id", "")))
        db.executemany(
            "INSERT INTO audit (seq, hash, body, kind, request_id) VALUES (?, ?, ?, ?, ?)", rows
        )
        return Entry(rows[-1][0], rows[-1][1], rows[-1][2]) if rows else None

    def append(self, body: dict) -> Entry:
        """Append one entry, durable on return (group commit with concurrent appends)."""
        return self._state.group(lambda db: self.append_in(db, body))

    def append_many(self, bodies: list[dict]) -> Entry | None:
        with self._state.transaction() as db:
            return self.append_many_in(db, bodies)

    # --- heads and checkpoints ------------------------------------------------------------

    def head(self) -> tuple[int, str]:
        with self._state.transaction() as db:
            row = db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        return (row[0], row[1]) if row else (0, GENESIS)

    def checkpoint(self, now: str, *, force: bool = False) -> Head | None:
        """Sign the current head if it moved since the last checkpoint (or if forced)."""
        with self._state.transaction() as db:
            row = db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
            size, head = (row[0], row[1]) if row else (0, GENESIS)
            last = db.execute("SELECT MAX(size) FROM audit_heads").fetchone()[0]
            if last == size and not force:
                return None
            sig = self._sign_in(db, size, head, now)
        return Head(size, head, now, sig)

    def _sign_in(self, db: sqlite3.Connection, size: int, head: str, now: str) -> str:
        """Sign the head at ``size`` and keep it, naming this node's certificate."""
        sig = sign_head(self._key, self.node_id, size, head, now)
        db.execute(
            "INSERT OR REPLACE INTO audit_heads (size, hash, time, signature, cert) "
            "VALUES (?, ?, ?, ?, ?)",
            (size, head, now, sig, self._cert),
        )
        return sig

    def latest_head(self) -> Head | None:
        with self._state.transaction() as db:
            row = db.execute(
                "SELECT size, hash, time, signature FROM audit_heads ORDER BY size DESC LIMIT 1"
            ).fetchone()
        return Head(*row) if row else None

    def hash_at(self, size: int) -> str:
        if size == 0:
            return GENESIS
        with self._state.transaction() as db:
            row = db.execute("SELECT hash FROM audit WHERE seq = ?", (size,)).fetchone()
        return row[0] if row else ""

    def digests(self, after: int, upto: int) -> list[str]:
        """Body digests of entries (after, upto]: a witness recomputes the chain from them."""
        with self._state.transaction() as db:
            rows = db.execute(
                "SELECT body FROM audit WHERE seq > ? AND seq <= ? ORDER BY seq", (after, upto)
            ).fetchall()
        return [body_digest(r[0]) for r in rows]

    def grew_since(self, after: int, *, ignoring: str) -> bool:
        """Whether an entry of another kind than ``ignoring`` follows entry ``after``."""
        with self._state.transaction() as db:
            row = db.execute(
                "SELECT 1 FROM audit WHERE seq > ? AND kind != ? LIMIT 1", (after, ignoring)
            ).fetchone()
        return row is not None

    # --- reading ---------------------------------------------------------------------------

    def entries(self, after: int = 0, limit: int = 100_000) -> list[Entry]:
        with self._state.transaction() as db:
            rows = db.execute(
                "SELECT seq, hash, body FROM audit WHERE seq > ? ORDER BY seq LIMIT ?",
                (after, limit),
            ).fetchall()
        return [Entry(*r) for r in rows]

    def for_request(self, request_id: str) -> list[Entry]:
        with self._state.read() as db:
            rows = db.execute(
                "SELECT seq, hash, body FROM audit WHERE request_id = ? ORDER BY seq",
                (request_id,),
            ).fetchall()
        return [Entry(*r) for r in rows]

    def export_lines(self, witnessed: Iterable[dict], now: str, actor: str) -> Iterator[str]:
        """Write the export's ``audit.exported`` entry (by ``actor``) and sign the head at
        exactly it, in one transaction, then return the export file line by line: header,
        entries, signed heads, countersignatures. The entry and its head are written here,
        not when the lines are first read.

        So an export ends with its own ``audit.exported`` entry and the head signed at it,
        which the verifier requires: a file cut back to an earlier checkpoint (its last
        entries and final head removed) no longer verifies. The entry used to be appended
        on its own and the head signed after, so entries appended in between followed it
        (review, 2026-12-05)."""
        with self._state.transaction() as db:
            entry = self.append_in(db, {"kind": "audit.exported", "time": now, "actor": actor})
            sig = self._sign_in(db, entry.seq, entry.hash, now)
        return self._lines(witnessed, now, Head(entry.seq, entry.hash, now, sig))

    def _lines(self, witnessed: Iterable[dict], now: str, final: Head) -> Iterator[str]:
        header = {
            "format": FORMAT,
            "node": self.node_id,
            "cert": self.cert_pem.decode(),
            "exported_at": now,
        }
        yield "F\t" + canonical(header) + "\n"
        after = 0
        while after < final.size:
            batch = self.entries(after, 50_000)
            if not batch:
                break
            for e in batch:
                if e.seq > final.size:
                    break
                yield f"E\t{e.seq}\t{e.hash}\t{e.body}\n"
            after = batch[-1].seq
        # The certificates whose keys signed the heads, each once (a node holds a few in
        # its life): each H line names its own by digest.
        with self._state.transaction() as db:
            certs = db.execute(
                "SELECT pem FROM audit_certs WHERE digest IN "
                "(SELECT DISTINCT cert FROM audit_heads WHERE size <= ?) ORDER BY digest",
                (final.size,),
            ).fetchall()
        for (pem,) in certs:
            yield "C\t" + canonical({"cert": pem}) + "\n"
        # Heads a batch at a time, as the entries: a node signs up to one a second, and an
        # export held them all in memory (review, 2026-12-04).
        after = -1
        while True:
            with self._state.transaction() as db:
                heads = db.execute(
                    "SELECT size, hash, time, signature, cert FROM audit_heads "
                    "WHERE size > ? AND size <= ? ORDER BY size LIMIT 50000",
                    (after, final.size),
                ).fetchall()
            if not heads:
                break
            for size, head, time, sig, cert in heads:
                yield f"H\t{size}\t{head}\t{time}\t{sig}\t{cert}\n"
            after = heads[-1][0]
        for w in witnessed:  # read lazily: not those a round kept after the final head
            if int(w.get("size", 0)) <= final.size:
                yield "W\t" + canonical(w) + "\n"
