"""Offline verification of an exported audit log, with the CA certificate alone.

Checks, in order: the exporting node's certificate was issued by the CA; entries are
numbered 1, 2, 3 ... and each hash is the chain step over its body (this names the
first entry that was modified, deleted, reordered or inserted); every signed head
verifies with the key of the certificate it names (CA-issued, of the same node: a node
renews its key) and matches the chain at its size (a truncated tail or a
rewritten chain shows here); the last head covers every entry and the last entry is the
export's own ``audit.exported`` (a file cut back to an earlier checkpoint shows here); and
every witnessed head -- countersigned by another member
-- matches the chain, which shows a history rewritten after it was witnessed.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from federation.canonical import loads
from gateway import grant_replay
from gateway.audit import FORMAT, GENESIS, head_message
from gateway.errors import FedgateError
from gateway.identity import Identity, identity_of, verify_signed_by
from gateway.state import cert_digest
from gateway.witness import verify_countersignature


class VerifyError(Exception):
    """The log is not intact; the message names the first problem found."""


@dataclass
class Report:
    node: str
    entries: int
    heads: int
    witnessed: int
    kinds: dict[str, int] = field(default_factory=dict)
    # per witness, the largest size of this log it countersigned (how much of the tail
    # no peer has seen is ``entries`` less the largest of these)
    covered: dict[str, int] = field(default_factory=dict)
    # heads of this log from the witness files given (not the export's own W lines)
    from_files: int = 0


_WITNESS_FIELDS: dict[str, type] = {
    "witness": str,
    "node": str,
    "size": int,
    "head": str,
    "time": str,
    "countersignature": str,
    "cert": str,
}
_HEADER_FIELDS: dict[str, type] = {"node": str, "cert": str}


def _typed(value: object, fields: Mapping[str, type]) -> bool:
    """A JSON object with each field of ``fields``, of its type (a bool is not an int)."""
    return isinstance(value, dict) and all(
        isinstance(value.get(k), kind) and not isinstance(value.get(k), bool)
        for k, kind in fields.items()
    )


def _witness_line(line: str, where: str) -> dict:
    try:
        w = loads(line[2:])
    except ValueError:
        raise VerifyError(f"{where} is not a witnessed head (not JSON)") from None
    if not _typed(w, _WITNESS_FIELDS):
        raise VerifyError(f"{where} is not a witnessed head (missing fields or of a wrong type)")
    return w


def _whole(text: str) -> bool:
    """A count as written: ASCII digits ("²".isdigit() is True, and int() refuses it),
    at most 20 (int() refuses strings of over 4 300 digits)."""
    return 0 < len(text) <= 20 and text.isascii() and text.isdigit()


def _kind(body: str) -> str:
    """An entry's kind, read from its parsed body ("?" when it has none)."""
    try:
        e = loads(body)
    except ValueError:
        return "?"
    kind = e.get("kind") if isinstance(e, dict) else None
    return kind if isinstance(kind, str) else "?"


def _identity(cert: x509.Certificate, what: str) -> Identity:
    try:
        return identity_of(cert)
    except FedgateError as exc:
        raise VerifyError(f"{what}: {exc.message}") from None


def _cert(pem: str, bundle: list[x509.Certificate], what: str) -> x509.Certificate:
    try:
        cert = x509.load_pem_x509_certificate(pem.encode())
    except ValueError:
        raise VerifyError(f"{what}: certificate cannot be parsed") from None
    if not verify_signed_by(cert, bundle):
        raise VerifyError(f"{what}: certificate is not issued by the federation CA")
    return cert


def _certificate_line(line: str, where: str) -> str:
    try:
        c = loads(line[2:])
    except ValueError:
        raise VerifyError(f"{where} is not a certificate (not JSON)") from None
    if not _typed(c, {"cert": str}):
        raise VerifyError(f"{where} is not a certificate (missing fields or of a wrong type)")
    return str(c["cert"])


def _head_key(
    certs: Mapping[str, str],
    digest: str,
    node: str,
    bundle: list[x509.Certificate],
    size: int,
) -> ec.EllipticCurvePublicKey:
    """The key of the certificate a head names: one in the export, issued by the CA, the
    node certificate of the exported node itself."""
    what = f"signed head at size {size}"
    pem = certs.get(digest)
    if pem is None:
        raise VerifyError(f"{what} names a certificate the export does not hold")
    cert = _cert(pem, bundle, what)
    signer = _identity(cert, what)
    if signer.role != "node" or signer.id != node:
        raise VerifyError(f"{what} is signed by {signer}, not by node {node}")
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise VerifyError(f"{what} does not verify with the node key")
    return key


def verify(
    lines: Iterable[str], bundle: list[x509.Certificate], extra_witnessed: Iterable[str] = ()
) -> Report:
    """Verify an export given line by line, cut at "\\n" only: a file opened as text, or
    ``text.split("\\n")``; never ``str.splitlines()``, which also cuts at U+2028, U+2029
    and U+0085, characters an entry's text (say, a refusal's reason) may hold."""
    it = iter(lines)
    first = next(it, "")
    if not first.startswith("F\t"):
        raise VerifyError("not a fedgate audit export (no header line)")
    try:
        header = loads(first[2:])
    except ValueError:
        raise VerifyError("header line is not JSON") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        found = header.get("format") if isinstance(header, dict) else header
        raise VerifyError(f"unknown format {found!r}")
    if not _typed(header, _HEADER_FIELDS):
        raise VerifyError("header line lacks the node or its certificate")
    node = header["node"]
    cert = _cert(header["cert"], bundle, "exporting node")
    signer = _identity(cert, "exporting node")
    if signer.role != "node" or signer.id != node:
        raise VerifyError(f"header says node {node!r} but the certificate is {signer}")
    # The certificates that signed heads, by digest (C lines; the header's among them): an
    # H line names its own, so a head signed before the node renewed its key verifies
    # with the key it was signed with. An H line naming none (an export from before
    # certificates were named) is the header's.
    certs: dict[str, str] = {cert_digest(header["cert"].encode()): header["cert"]}
    keys: dict[str, ec.EllipticCurvePublicKey] = {}

    chain: dict[int, str] = {0: GENESIS}
    kinds: dict[str, int] = {}
    entries: list[tuple[int, str, str]] = []
    heads: list[list[str]] = []
    witnessed: list[dict] = []
    for lineno, raw in enumerate(it, start=2):
        line = raw.rstrip("\n")
        tag = line[:2]
        if tag == "E\t":
            parts = line.split("\t", 3)
            number = parts[1] if len(parts) == 4 else ""
            # _whole(number), inlined: this runs once an entry
            if not (0 < len(number) <= 20 and number.isascii() and number.isdigit()):
                raise VerifyError(f"line {lineno} is not an entry")
            entries.append((int(number), parts[2], parts[3]))
        elif tag == "H\t":
            fields = line.split("\t")[1:]
            if len(fields) not in (4, 5) or not _whole(fields[0]):
                raise VerifyError(f"line {lineno} is not a signed head")
            heads.append(fields)
        elif tag == "C\t":
            pem = _certificate_line(line, f"line {lineno}")
            certs[cert_digest(pem.encode())] = pem
        elif tag == "W\t":
            witnessed.append(_witness_line(line, f"line {lineno}"))
        elif line:
            raise VerifyError(f"line {lineno} is not an entry, certificate, head or witness line")
    prev = GENESIS
    sha256 = hashlib.sha256
    granted: list[tuple[int, str, str]] = []  # grants' and releases' entries, replayed below
    replayed, kinds_get = grant_replay.KINDS, kinds.get  # looked up once, not per entry
    for i, (seq, stored, body) in enumerate(entries):
        expected = i + 1
        if seq != expected:  # the log is not 1, 2, 3 ...: say how (read once, here)
            position: dict[int, int] = {}
            for j, (other, _h, _b) in enumerate(entries):
                position.setdefault(other, j)
            if position[seq] != i:
                raise VerifyError(
                    f"entry {seq} appears again at position {expected}: an entry was inserted"
                )
            if seq < expected:
                after = f"after entry {entries[i - 1][0]}" if i else "first"
                raise VerifyError(
                    f"entry {seq} appears {after}: entries were reordered or an entry was inserted"
                )
            if expected in position:
                raise VerifyError(
                    f"entry {expected} appears after entry {seq}: entries were reordered"
                )
            raise VerifyError(f"entry {expected} is missing: deleted from the log")
        # Same computation as audit.link(seq, prev, body_digest(body)), inlined for speed.
        digest = sha256(body.encode()).hexdigest()
        computed = sha256(f"{seq}|{prev}|{digest}".encode()).hexdigest()
        if computed != stored:
            raise VerifyError(f"entry {seq} was modified: its hash does not match its body")
        prev = chain[seq] = computed
        start = body.find('"kind":"')
        kind = body[start + 8 : body.find('"', start + 8)] if start >= 0 else "?"
        kinds[kind] = kinds_get(kind, 0) + 1
        if kind in replayed:
            granted.append((seq, kind, body))
    expected = len(entries) + 1
    own = len(witnessed)  # the export's own W lines; the files' follow
    for n, raw in enumerate(extra_witnessed, start=1):
        if raw.startswith("W\t"):
            witnessed.append(_witness_line(raw.rstrip("\n"), f"witness file line {n}"))
        elif raw.strip():  # the wrong file must not pass as "witnesses checked"
            raise VerifyError(f"witness file line {n} is not a witnessed head")
    size = expected - 1
    if not heads:
        raise VerifyError("no signed head: the export is incomplete")
    header_digest = cert_digest(header["cert"].encode())
    for fields in heads:
        h_size, h_hash, h_time, h_sig = int(fields[0]), fields[1], fields[2], fields[3]
        signed_by = fields[4] if len(fields) == 5 else header_digest
        key = keys.get(signed_by)
        if key is None:
            key = keys[signed_by] = _head_key(certs, signed_by, node, bundle, h_size)
        try:
            key.verify(
                base64.b64decode(h_sig),
                head_message(node, h_size, h_hash, h_time),
                ec.ECDSA(hashes.SHA256()),
            )
        except (InvalidSignature, ValueError):
            raise VerifyError(
                f"signed head at size {h_size} does not verify with the node key"
            ) from None
        if h_size > size:
            raise VerifyError(
                f"log truncated: the head signed at {h_time} covers {h_size} entries but only "
                f"{size} are present (entry {size + 1} onwards was removed)"
            )
        if chain.get(h_size) != h_hash:
            raise VerifyError(
                f"signed head at size {h_size} does not match the chain: an entry at or "
                f"before {h_size} was changed and the chain recomputed"
            )
    last = max(int(h[0]) for h in heads)
    if last != size:
        raise VerifyError(f"entries after {last} are not covered by a signed head")
    # The node writes its audit.exported entry and signs the head at exactly it in one
    # transaction (AuditLog.export_lines): an export ends with both. A file cut back to
    # an earlier checkpoint -- its last entries and final head removed -- passed the
    # checks above (review, 2026-12-05).
    final = _kind(entries[-1][2]) if entries else ""
    if final != "audit.exported":
        was = f"entry {size} is {final!r}" if entries else "it has no entries"
        raise VerifyError(
            f"export incomplete: it does not end with its own audit.exported entry ({was}): "
            "its last entries and final signed head were cut off"
        )
    covered: dict[str, int] = {}
    for w in witnessed:
        wcert = _cert(w["cert"], bundle, f"witness {w.get('witness')}")
        who = _identity(wcert, f"witness {w['witness']}")
        if who.role != "node" or who.id != w["witness"]:
            raise VerifyError(f"countersignature by {w['witness']} is not by that member node")
        try:
            signed = verify_countersignature(w, wcert)
        except (UnicodeEncodeError, ValueError):  # a field no signer could have signed
            raise VerifyError(f"a head witnessed by {w['witness']} is not readable") from None
        if not signed:
            raise VerifyError(f"countersignature by {w['witness']} does not verify")
        if w["node"] != node:
            continue
        if w["witness"] == node:  # a node cannot witness its own log
            raise VerifyError(f"a head of {node} countersigned by {node} itself")
        if w["size"] > size:
            raise VerifyError(
                f"log truncated: {w['witness']} witnessed {w['size']} entries on {w['time']} "
                f"but only {size} are present (if its witness file was collected after this "
                "export, collect the files first and export again)"
            )
        if chain.get(w["size"]) != w["head"]:
            raise VerifyError(
                f"history rewritten: the head at size {w['size']} witnessed by {w['witness']} "
                f"on {w['time']} does not match this log"
            )
        covered[w["witness"]] = max(covered.get(w["witness"], 0), w["size"])
    try:
        uncovered = grant_replay.violations(granted)
    except grant_replay.Malformed as exc:  # a signed entry the node never wrote so
        raise VerifyError(f"cannot replay the grants: {exc}") from None
    if uncovered:
        more = f" (and {len(uncovered) - 1} more)" if len(uncovered) > 1 else ""
        raise VerifyError(f"a release no grant covered: {uncovered[0]}{more}")
    matched = {(w["witness"], w["size"]) for w in witnessed if w["node"] == node}
    files = {(w["witness"], w["size"]) for w in witnessed[own:] if w["node"] == node}
    return Report(node, size, len(heads), len(matched), kinds, covered, len(files))
