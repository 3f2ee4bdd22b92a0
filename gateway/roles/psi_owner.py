"""The two owners of a PSI session or join aggregate (docs/psi.md, "The protocol").

The *matcher* is the owner the analyst's home asks (``match``, ``Peer/PsiRun``): it
opens the exchange with the other owner (``respond``, ``Peer/PsiExchange``), finds the
matches, and releases the answer to the home. Each side runs its part through its own
release pipeline, so each decides under its own grants, and spends, audits and signs its
own release. Any check that fails (a point off the group, a batch out of order, more
points than declared, a grant, the differencing defence) ends the session with a typed
error at both sides, audited, and nothing released.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import queue
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from federation.envelope import Envelope
from federation.outcome import Code, Error
from federation.partials import to_ipc
from federation.psi import frames as f
from federation.psi import group, paillier
from federation.psi.errors import PsiError
from federation.psi.join_sums import (
    COUNT_BITS,
    MAX_DIGITS,
    Scale,
    accumulate,
    mask_sums,
    pack,
    unmask,
    unpack,
)
from federation.psi.progress import StageProgress
from federation.psi.stream import Inbound, Limits, intersection_size, permutation
from federation.reports import Explanation, OwnerReport
from federation.sql.join import JoinPlan
from gateway import typecheck
from gateway.catalog import Catalog, CatalogEntry
from gateway.column_types import DECIMAL, FLOAT, INT, parse_type
from gateway.engine import Engine
from gateway.errors import (
    Cancelled,
    DeadlineExceeded,
    FailedPrecondition,
    FedgateError,
    InvalidArgument,
    NoisedTooLarge,
    NoiseSent,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unavailable,
)
from gateway.limits import cut
from gateway.planning import join_or_refuse
from gateway.policy.decide import dp_bounds
from gateway.policy.model import Decision
from gateway.policy.store import GrantStore
from gateway.policy.validate import MAX_EPSILON, MIN_EPSILON
from gateway.privacy import laplace_noise
from gateway.psi_sessions import PsiSessions, Session
from gateway.release.pipeline import Protected, Released, ReleasePipeline
from gateway.release.psi import PsiRelease
from gateway.roles.psi_rows import MAX_SET, ROWS_BYTES, SideRows, batch, canonical
from gateway.roles.vouching import Vouching

log = logging.getLogger("fedgate.psi")

Exchange = Callable[[str, Iterator[f.Frame], float], Iterator[f.Frame]]
Progress = Callable[[str, float], None]  # a stage and the fraction of it done

TAG_BYTES = 16
MAX_CIPHERTEXT_BYTES = 1 << 30  # a value owner's ciphertexts the matcher holds at once
ABORT_SECONDS = 2.0  # how long a refusing side waits for the peer to take its reason
CANCELLED = "the session was cancelled"
OUT_FRAMES = 8  # frames waiting to be sent, per session
KEY_SESSIONS = 100  # a value owner's Paillier key serves this many sessions, then a new one


FLOAT_DIGITS = 6  # fixed-point digits of a float column's values
# A packed value: |v| < 2^130 fixed-point units (a decimal(38,0), 1e30 at 6 digits), then
# the 64 bits that count rows with a value (join_sums.pack).
MAX_VALUE_BITS = 130
PACKED_BITS = MAX_VALUE_BITS + COUNT_BITS


def value_columns(plan: JoinPlan) -> tuple[str, ...]:
    """The columns the value owner encrypts, one ciphertext per row each (packed with
    whether the row has a value: ``join_sums.pack``)."""
    return () if plan.value_side is None else plan.sides[plan.value_side].value_columns


def value_kind(declared: str) -> str:
    """How a column's sums travel and come back: int, decimal(p,s) or float."""
    t = parse_type(declared)
    if t.family == DECIMAL:
        return t.name
    if t.family == INT:
        return "int"
    if t.family == FLOAT:
        return "float"
    raise InvalidArgument(f"a column of type {declared} cannot be summed")


def check_kinds(kinds: tuple[str, ...], ncols: int) -> None:
    """The value owner's kinds, checked in its hello: one per value column, each one this
    node can read its sums back as (a decimal's scale at most ``MAX_DIGITS``), so that
    no sum is refused only after the value owner has spent and signed (review,
    2026-12-05: ``decimal(38,30)`` passed and failed in ``_table``)."""
    if len(kinds) != ncols:
        raise InvalidArgument("the value owner did not say how its sums are written")
    for kind in kinds:
        if kind in ("int", "float"):
            continue
        try:
            t = parse_type(kind)
        except FedgateError:
            t = None
        if t is None or t.family != DECIMAL:
            raise InvalidArgument(f"the value owner writes its sums as {cut(kind, 60)!r}: no kind")
        if not 0 <= t.scale <= MAX_DIGITS:
            raise InvalidArgument(
                f"the value owner writes its sums as {t.name}: a scale of at most "
                f"{MAX_DIGITS} digits is read back"
            )


def kind_digits(kind: str) -> int:
    if kind == "int":
        return 0
    if kind == "float":
        return FLOAT_DIGITS
    return parse_type(kind).scale


def decoded(kind: str, total: int) -> Any:
    value = Scale(kind_digits(kind)).decode(total)
    return float(value) if kind == "float" else value


def clamped(values: list[Any], bounds: tuple[float, float] | None) -> list[Any]:
    if bounds is None:
        return values
    lo, hi = bounds
    return [None if v is None else min(max(v, type(v)(lo)), type(v)(hi)) for v in values]


def typed(exc: PsiError) -> FedgateError:
    return FedgateError.of(Error(exc.code, exc.reason))


def session_label(request_id: str, plan: JoinPlan) -> bytes:
    """Binds every hash of the session to the session and to both sides' datasets."""
    sides = [[s.node, s.dataset, s.key] for s in plan.sides]
    return hashlib.blake2b(
        json.dumps([request_id, sides]).encode(), digest_size=32, person=b"fedgate-label"
    ).digest()


def chunks(n: int, size: int) -> Iterator[tuple[int, int]]:
    for start in range(0, n, size):
        yield start, min(n, start + size)


def blind_parallel(pool: ThreadPoolExecutor, points: bytes, scalar: bytes) -> bytes:
    """``group.blind`` on two threads (libsodium runs without the GIL)."""
    n = len(points) // group.POINT_BYTES
    if n < 256:
        return bytes(group.blind(points, scalar))
    half = (n // 2) * group.POINT_BYTES
    first = pool.submit(group.blind, points[:half], scalar)
    second = group.blind(points[half:], scalar)
    return bytes(first.result()) + bytes(second)


def blind_inbound(pool: ThreadPoolExecutor, points: bytes, scalar: bytes) -> bytes:
    """``blind_parallel`` as an ``Inbound`` transform: libsodium's multiplication decodes
    each point (so a batch is not decoded twice); when one does not decode, the byte
    checks name it."""
    try:
        return blind_parallel(pool, points, scalar)
    except PsiError:
        group.check_points(points)
        raise


@dataclass
class Settings:
    limits: Limits
    max_batch: int = 4096


class _Outbox:
    """Frames one side sends, bounded; closed when the consumer is gone. ``abort`` hands
    the peer this side's refusal instead of whatever it would have sent next."""

    def __init__(self, deadline: float) -> None:
        self._q: queue.Queue[f.Frame | None] = queue.Queue(maxsize=OUT_FRAMES)
        self._deadline = deadline
        self.gone = threading.Event()
        self.aborted: f.Release | None = None
        self.sent = threading.Event()  # the sending side finished (or gave up)

    def abort(self, refusal: f.Release, wait: float = 1.0) -> None:
        """Tell the peer why (best effort, at most ``wait`` seconds)."""
        self.aborted = refusal
        with contextlib.suppress(queue.Full):
            self._q.put_nowait(refusal)
        with contextlib.suppress(queue.Full):
            self._q.put_nowait(None)
        self.sent.wait(timeout=wait)

    def put(self, frame: f.Frame | None) -> None:
        while True:
            if self.gone.is_set():
                raise Unavailable("the other owner stopped the session")
            left = self._deadline - time.monotonic()
            if left <= 0:
                raise DeadlineExceeded("the session's deadline passed")
            try:
                self._q.put(frame, timeout=min(left, 0.5))
                return
            except queue.Full:
                continue

    def frames(self) -> Iterator[f.Frame]:
        try:
            while True:
                left = self._deadline - time.monotonic()
                if left <= 0:
                    return
                try:
                    frame = self._q.get(timeout=min(left, 0.2))
                except queue.Empty:
                    if self.gone.is_set():  # nothing more will come (what came is sent)
                        return
                    continue
                if frame is None:
                    return
                yield frame
        finally:
            self.gone.set()


def _next(it: Iterator[f.Frame], what: str) -> f.Frame:
    try:
        return next(it)
    except StopIteration:
        raise Unavailable(f"the other owner ended the session before {what}") from None
    except FedgateError:
        raise
    except Exception:  # the call was cancelled or the peer went away under the read
        raise Unavailable(f"the other owner stopped the session before {what}") from None


def _tell(frames: Iterator[f.Frame], outbox: _Outbox, refusal: f.Release) -> None:
    """Hand the peer this side's refusal, then let the call end as the peer ends it:
    cancelling it at once could drop the refusal unsent. The call is read out on a
    thread that ends with the peer's answer, or at the call's deadline at the latest."""
    outbox.abort(refusal)

    def drain() -> None:
        with contextlib.suppress(Exception):
            for _ in frames:
                pass

    t = threading.Thread(target=drain, name="psi-drain", daemon=True)
    t.start()
    t.join(timeout=ABORT_SECONDS)


def _refused_by_peer(report: OwnerReport) -> FedgateError:
    """The peer's refusal, said as the peer's (its reason speaks of *its* sets)."""
    assert report.error is not None
    e = report.error
    return FedgateError.of(Error(e.code, f"owner {report.node_id} refused: {e.reason}"))


def _expect(it: Iterator[f.Frame], kind: type, what: str) -> Any:
    frame = _next(it, what)
    if isinstance(frame, f.Release) and frame.report.error is not None:
        raise _refused_by_peer(frame.report)
    if not isinstance(frame, kind):
        raise InvalidArgument(f"protocol error: {type(frame).__name__} arrived, not {what}")
    return frame


def _column(values: list[Any]) -> pa.Array:
    """Sums as a column; an integer sum beyond int64 as decimal(38, 0), exactly, and
    beyond 38 digits as decimal(76, 0) (``_check_opened`` bounds them well within)."""
    if any(isinstance(v, int) and not -(2**63) <= v < 2**63 for v in values):
        wide = any(isinstance(v, int) and abs(v) >= 10**38 for v in values)
        t = pa.decimal256(76, 0) if wide else pa.decimal128(38, 0)
        return pa.array([None if v is None else Decimal(v) for v in values], t)
    return pa.array(values)


NOISE_TAILS = 64  # a Laplace draw beyond 64 scales: e^-64, about 1.6e-28


def _check_opened(
    opened: list[list[tuple[int, int]]], rows: list[int], epsilon: float, ncols: int
) -> None:
    """Each opened (sum, rows with a value) within what the group's matched rows can add
    up to: each packed value under 2^130 units (the value owner refuses more), plus,
    under DP, the value owner's noise up to ``NOISE_TAILS`` of its largest scale (its
    bounds' sensitivity is at most 2^130 units). A sum beyond it (a value owner opening
    something else: ~600 digits made Arrow fail, INTERNAL) is refused (review,
    2026-12-05)."""
    share = epsilon / (1 + 2 * ncols) if epsilon > 0 else 0.0
    slack_rows = int(NOISE_TAILS / share) + 1 if share else 0
    slack_value = slack_rows << MAX_VALUE_BITS
    for column in opened:
        for (total, count), n in zip(column, rows, strict=True):
            if abs(total) > (n << MAX_VALUE_BITS) + slack_value or not (
                -slack_rows <= count <= n + slack_rows
            ):
                raise InvalidArgument(
                    "the other owner opened a sum beyond what the group's rows can add up to"
                )


def _check_hello(h: f.Hello, limits: Limits) -> None:
    if h.version != f.VERSION:
        raise FailedPrecondition(f"PSI protocol version {h.version}; this node speaks {f.VERSION}")
    if not 0 <= h.set_size <= limits.max_set:
        raise InvalidArgument(f"a declared set of {h.set_size:,}: at most {limits.max_set:,}")
    if not h.max_batch >= 1 or not 1 <= h.min_group_size <= 10**9:
        raise InvalidArgument("a hello with no batch size or no k")
    if not (h.epsilon == 0.0 or MIN_EPSILON <= h.epsilon <= MAX_EPSILON):
        raise InvalidArgument(
            f"a hello's epsilon must be 0 (no DP) or between {MIN_EPSILON:g} and {MAX_EPSILON:g}"
        )


def check_exact(plan: JoinPlan, decision: Decision, epsilon: float) -> None:
    """Groups or sums over L2 data without DP only where the owner opted into exact
    answers: the same sets grouped two ways would otherwise show a group under k by
    difference, which sticky noise prevents for queries (docs/security.md)."""
    shaped = plan.group_side is not None or plan.value_side is not None
    if shaped and epsilon <= 0 and decision.level != "L1" and not decision.grant.exact:
        raise PermissionDenied(
            f"a grouped or summed join over {decision.level} data needs differential privacy "
            f"or the owner's opt-in to exact answers (grant {decision.grant.id} has neither): "
            "the same sets grouped two ways would show groups under k"
        )


def _dp_epsilon(mine: float, theirs: float) -> float:
    """The epsilon a count is noised with: the stricter of the owners that want DP."""
    wanted = [e for e in (mine, theirs) if e > 0]
    return min(wanted) if wanted else 0.0


class _Tags:
    """Group indices the matcher sends along its points, opaque to the other owner
    (AES-128 over index + 12 random bytes, one block each); only the matcher reads them
    back, after the other owner shuffled them with the points."""

    def __init__(self) -> None:
        self._key = secrets.token_bytes(16)

    def seal(self, index: np.ndarray) -> bytes:
        n = len(index)
        blocks = np.frombuffer(os.urandom(n * TAG_BYTES), dtype=np.uint8).reshape(n, TAG_BYTES)
        blocks = blocks.copy()
        blocks[:, :4] = index.astype("<u4").view(np.uint8).reshape(n, 4)
        enc = Cipher(algorithms.AES(self._key), modes.ECB()).encryptor()
        return enc.update(blocks.tobytes()) + enc.finalize()

    def open(self, tags: bytes, groups: int) -> np.ndarray:
        dec = Cipher(algorithms.AES(self._key), modes.ECB()).decryptor()
        plain = dec.update(tags) + dec.finalize()
        n = len(plain) // TAG_BYTES
        raw = np.frombuffer(plain, dtype=np.uint8).reshape(n, TAG_BYTES)[:, :4]
        index = np.ascontiguousarray(raw).view("<u4").reshape(n).astype(np.int64)
        if n and int(index.max()) >= groups:
            raise InvalidArgument("the other owner returned group tags that are not ours")
        return index


class PsiOwner:
    def __init__(
        self,
        node_id: str,
        catalog: Catalog,
        grants: GrantStore,
        engine: Engine,
        pipeline: ReleasePipeline,
        vouching: Vouching,
        sessions: PsiSessions,
        exchange: Exchange,
        settings: Settings | None = None,
    ) -> None:
        self.node_id = node_id
        self.catalog = catalog
        self.grants = grants
        self.engine = engine
        self.pipeline = pipeline
        self.vouching = vouching
        self.sessions = sessions
        self.exchange = exchange
        self.settings = settings or Settings(Limits())
        self._key_lock = threading.Lock()
        self._key: paillier.PrivateKey | None = None
        self._key_uses = 0

    # --- shared ---------------------------------------------------------------------------

    def _side(self, env: Envelope, *, matcher: bool) -> tuple[JoinPlan, int, CatalogEntry]:
        plan = join_or_refuse(env.body)
        side = plan.matcher if matcher else 1 - plan.matcher
        if plan.sides[side].node != self.node_id:
            role = "matching" if matcher else "other"
            wrong = InvalidArgument(f"{self.node_id} is not the {role} owner of this session")
            self.pipeline.refused("psi", env, {"dataset": plan.sides[side].dataset}, wrong)
            raise wrong
        name = plan.sides[side].dataset
        entry = self.catalog.get(name)
        if entry is None or entry.descriptor.level == "L4":
            missing = NotFound(f"no dataset {name!r} at {self.node_id}")
            self.pipeline.refused("psi", env, {"dataset": name}, missing)
            raise missing
        return plan, side, entry

    def _rows(
        self, plan: JoinPlan, side: int, entry: CatalogEntry, deadline: float, request_id: str
    ) -> SideRows:
        s = plan.sides[side]
        table = self.engine.run(
            plan.side_sql(
                side, self.engine.ensure_loaded(entry), typecheck.column_families(entry.descriptor)
            ),
            timeout=max(0.01, deadline - time.monotonic()),
            request_id=request_id,
            max_bytes=ROWS_BYTES,
        )
        grouped = side == plan.group_side
        rows = canonical(
            table,
            s.key,
            s.group_columns if grouped else (),
            s.value_columns,
            unique=plan.group_side is not None or plan.value_side is not None,
            dataset=s.dataset,
        )
        del table
        # The read and the canonical copies are freed; hand their pages back before the
        # session's buffers are filled, rather than keep them in Arrow's pool.
        pa.default_memory_pool().release_unused()
        return rows

    def _paillier(self) -> paillier.PrivateKey:
        with self._key_lock:
            if self._key is None or self._key_uses >= KEY_SESSIONS:
                self._key, self._key_uses = paillier.PrivateKey.generate(), 0
            self._key_uses += 1
            return self._key

    # --- the matcher ----------------------------------------------------------------------

    def match(self, env: Envelope, stop: threading.Event | None = None) -> Iterator[f.Event]:
        """Progress events, then the answer; run the session on a worker thread.
        ``stop`` is set when whoever asked is gone: the session stops at its next step,
        before anything more is computed or released."""
        plan, side, entry = self._side(env, matcher=True)
        stop = stop or threading.Event()
        events: queue.Queue[f.Event | BaseException] = queue.Queue(maxsize=64)

        def put(event: f.Progress) -> None:
            with contextlib.suppress(queue.Full):  # advisory: dropped rather than waited on
                events.put_nowait(event)

        progress = StageProgress(self.node_id, put)

        def work() -> None:
            answer: f.PsiAnswer | BaseException
            try:
                answer = self._matched(env, plan, side, entry, progress, stop)
            except BaseException as exc:  # handed to the caller's thread
                answer = exc
            while True:
                try:
                    events.put(answer, timeout=0.5)
                    return
                except queue.Full:
                    if stop.is_set() or time.monotonic() > env.deadline:
                        return

        worker = threading.Thread(target=work, name=f"psi-{env.request_id[:8]}", daemon=True)
        worker.start()
        try:
            while True:
                left = env.deadline + 5.0 - time.monotonic()
                try:
                    event = events.get(timeout=max(0.01, left))
                except queue.Empty:
                    raise DeadlineExceeded("the PSI session's deadline passed") from None
                if isinstance(event, BaseException):
                    raise event
                yield event
                if isinstance(event, f.PsiAnswer):
                    return
        finally:
            # However this ends (the answer, an error, the caller gone and this generator
            # closed), the session's worker stops at its next frame: a cancelled session
            # kept its rows, points and ciphertexts until its deadline (review, 2026-12-04).
            stop.set()

    def _matched(
        self,
        env: Envelope,
        plan: JoinPlan,
        side: int,
        entry: CatalogEntry,
        progress: Progress,
        stop: threading.Event,
    ) -> f.PsiAnswer:
        peer_node = plan.sides[1 - side].node
        session = _MatcherSession(self, env, plan, side, entry, progress, stop)
        op = PsiRelease(plan, side, entry, self.grants, session.run)
        out = self.pipeline.run(op, env)
        if isinstance(out, Explanation):
            mine = OwnerReport(self.node_id, grant_id=out.grant_id, explanation=out)
            peer = self._explained_by_peer(env, peer_node)
            return f.PsiAnswer(env.request_id, -1, False, 0, (mine, peer), learns(plan))
        assert isinstance(out, Released)
        result: _Matched = out.protected.value
        mine = OwnerReport(
            self.node_id,
            groups_released=result.groups,
            epsilon=out.protected.epsilon,
            grant_id=out.grant.id,
            receipt=out.receipt.to_json(),
        )
        return f.PsiAnswer(
            request_id=env.request_id,
            intersection=result.intersection,
            suppressed=result.intersection < 0,
            min_group_size=result.k,
            owners=(mine, result.peer),
            learns=learns(plan),
            payload=result.table_ipc,
            epsilon_spent=out.protected.epsilon + result.peer.epsilon,
        )

    def _explained_by_peer(self, env: Envelope, peer_node: str) -> OwnerReport:
        hello = f.Hello(0, 1, self.settings.max_batch, envelope=env)
        try:
            frames = self.exchange(peer_node, iter([hello]), env.deadline)
            frame = _next(frames, "its dry run")
        except FedgateError as exc:
            return OwnerReport(peer_node, error=exc.error)
        if not isinstance(frame, f.Release):
            return OwnerReport(peer_node, error=Error(Code.INTERNAL, "no dry-run answer"))
        return frame.report

    # --- the other owner ------------------------------------------------------------------

    def respond(self, caller_node: str, frames: Iterator[f.Frame]) -> Iterator[f.Frame]:
        """The other owner's side of an exchange the matcher opened."""
        it = iter(frames)
        hello = _expect(it, f.Hello, "its hello")
        env = hello.envelope
        if env is None:
            raise InvalidArgument("the first frame of a session carries the home's envelope")
        try:
            plan = join_or_refuse(env.body)
            self.vouching.check_partner(caller_node, env, plan.sides[plan.matcher].node)
        except FedgateError as exc:  # audited with the caller it came from
            self.pipeline.refused("psi", env, {"caller": caller_node}, exc)
            raise
        plan, side, entry = self._side(env, matcher=False)
        outbox = _Outbox(env.deadline)
        session = _ResponderSession(self, env, plan, side, entry, hello, it, outbox)
        op = PsiRelease(plan, side, entry, self.grants, session.run)

        def work() -> None:
            try:
                out = self.pipeline.run(op, env)
                if isinstance(out, Explanation):
                    report = OwnerReport(self.node_id, grant_id=out.grant_id, explanation=out)
                    outbox.put(f.Release(report))
                else:
                    assert isinstance(out, Released)
                    if session.opened is not None:
                        outbox.put(session.opened)
                    outbox.put(
                        f.Release(
                            OwnerReport(
                                self.node_id,
                                groups_released=session.groups,
                                epsilon=out.protected.epsilon,
                                grant_id=out.grant.id,
                                receipt=out.receipt.to_json(),
                            )
                        )
                    )
                outbox.put(None)
            except FedgateError as exc:
                session.failed = exc
                try:
                    outbox.put(f.Release(OwnerReport(self.node_id, error=exc.error)))
                    outbox.put(None)
                except FedgateError:
                    pass
            except BaseException:  # never a silent thread death
                log.exception("PSI session %s failed", env.request_id)
                session.failed = FedgateError("internal error in the PSI session")
                outbox.gone.set()

        threading.Thread(target=work, name=f"psi-r-{env.request_id[:8]}", daemon=True).start()
        yield from outbox.frames()


@dataclass(frozen=True)
class _Matched:
    intersection: int  # the released count (a join: of its released groups); -1: none
    k: int
    groups: int
    peer: OwnerReport
    table_ipc: bytes = b""


def learns(plan: JoinPlan) -> tuple[tuple[str, str], ...]:
    """What each party learns (docs/psi.md has the same table)."""
    m, o = plan.sides[plan.matcher], plan.sides[1 - plan.matcher]
    grouped = plan.group_side is not None
    valued = plan.value_side is not None
    matcher = (
        f"the size of {o.node}'s set; the number of matches"
        + (" per group of its own rows (also those under k)" if grouped else "")
        + (
            "; the sums of every group whose count passes k (also those withheld for too few "
            "values)"
            if valued
            else ""
        )
    )
    other = f"the size of {m.node}'s set; the released count" + (
        "s of the groups that pass k, and how many" if grouped else ""
    )
    analyst = "the released " + ("table (groups of at least k rows)" if grouped else "count")
    return (
        (f"{m.node} (matching owner)", matcher),
        (f"{o.node} (other owner)", other),
        ("home node", analyst + ", the owners' receipts"),
        ("analyst", analyst + ", or that it was suppressed"),
    )


class _Session:
    """One side's part of a session, as the release pipeline's compute step: a failure
    is typed (and so audited as a refusal), never a traceback to the peer."""

    env: Envelope
    # The epsilon of noise this side drew that has left it (the matcher's tally): from
    # then on, however the session ends, that epsilon is spent (review, 2026-12-05: a
    # peer that refused after each tally collected fresh noisy counts for free).
    noise_out = 0.0

    def run(self, decision: Decision, deadline: float) -> Protected:
        try:
            return self._typed_run(decision, deadline)
        except NoiseSent:
            raise
        except FedgateError as exc:
            if self.noise_out > 0:
                raise NoiseSent(exc, epsilon=self.noise_out) from exc
            raise

    def _typed_run(self, decision: Decision, deadline: float) -> Protected:
        try:
            return self._run(decision, deadline)
        except PsiError as exc:
            raise typed(exc) from None
        except FedgateError:
            raise
        except Exception:
            log.exception("PSI session %s failed", self.env.request_id)
            raise FedgateError("internal error in the PSI session (see the node log)") from None

    def _run(self, decision: Decision, deadline: float) -> Protected:
        raise NotImplementedError


class _MatcherSession(_Session):
    def __init__(
        self,
        owner: PsiOwner,
        env: Envelope,
        plan: JoinPlan,
        side: int,
        entry: CatalogEntry,
        progress: Progress,
        stop: threading.Event,
    ) -> None:
        self.o, self.env, self.plan, self.side, self.entry = owner, env, plan, side, entry
        self.progress = progress
        self.stop = stop

    def check_wanted(self) -> None:
        if self.stop.is_set():
            raise Cancelled(CANCELLED)

    def _run(self, decision: Decision, deadline: float) -> Protected:
        o, env, plan = self.o, self.env, self.plan
        peer_node = plan.sides[1 - self.side].node
        self.check_wanted()
        rows = o._rows(plan, self.side, self.entry, deadline, env.request_id)
        self.check_wanted()
        n = len(rows.items)
        label = session_label(env.request_id, plan)
        alpha = group.new_scalar()
        tags = _Tags() if rows.group_index is not None else None
        outbox = _Outbox(deadline)
        max_batch = o.settings.max_batch
        hello = f.Hello(
            n, decision.min_group_size, max_batch, envelope=env, epsilon=decision.epsilon
        )

        def requests() -> Iterator[f.Frame]:
            try:
                yield hello
                self.progress("blinded", 0.0)
                for seq, (a, b) in enumerate(chunks(n, max_batch)):
                    if outbox.aborted is not None:
                        yield outbox.aborted
                        return
                    if self.stop.is_set():  # no more of our set for a session not wanted
                        yield f.Release(OwnerReport(o.node_id, error=Cancelled(CANCELLED).error))
                        return
                    pts = group.blind(group.hash_to_points(label, batch(rows.items, a, b)), alpha)
                    sealed = b""
                    if tags is not None and rows.group_index is not None:
                        sealed = tags.seal(rows.group_index[a:b])
                    yield f.Points(f.OWN, seq, bytes(pts), tags=sealed)
                    self.progress("blinded", b / n)
                self.progress("blinded", 1.0)
                yield f.Done(f.OWN)
                yield from outbox.frames()
            finally:
                outbox.sent.set()

        frames = o.exchange(peer_node, requests(), deadline)
        told = False
        try:
            return self._exchange(decision, rows, alpha, tags, frames, outbox)
        except FedgateError as exc:
            if not isinstance(exc, Unavailable | DeadlineExceeded):
                _tell(frames, outbox, f.Release(OwnerReport(o.node_id, error=exc.error)))
                told = True
            raise
        finally:
            outbox.gone.set()
            if not told:  # told: the call ends as the peer ends it (or at its deadline)
                close = getattr(frames, "close", None)
                if close is not None:
                    close()

    def _exchange(
        self,
        decision: Decision,
        rows: SideRows,
        alpha: bytes,
        tags: _Tags | None,
        frames: Iterator[f.Frame],
        outbox: _Outbox,
    ) -> Protected:
        o, plan = self.o, self.plan
        limits = o.settings.limits
        n = len(rows.items)
        peer = _expect(frames, f.Hello, "its hello")
        _check_hello(peer, limits)
        k = max(decision.min_group_size, peer.min_group_size)
        valued = plan.value_side is not None
        ncols = len(value_columns(plan))
        pk = paillier.PublicKey.from_bytes(peer.paillier_key) if valued else None
        if valued:
            check_kinds(peer.value_kinds, ncols)
        ct = pk.ciphertext_bytes if pk is not None else 0
        if peer.set_size * ncols * ct > MAX_CIPHERTEXT_BYTES:
            raise ResourceExhausted(
                "the other owner's encrypted values would not fit this node's memory for one "
                "session: filter more, or sum fewer columns"
            )
        # This owner's own protections follow its own grant: a peer's epsilon (up to
        # MAX_EPSILON, a noise of nothing) must not switch them off (review, 2026-12-04).
        check_exact(plan, decision, decision.epsilon)
        # Remembered before anything is matched (a checked hello only).
        o.sessions.admit(
            self._session(decision, rows, peer),
            k,
            "matcher",
            rows.invalid,
            dp=decision.epsilon > 0,
            peer_dp=peer.epsilon > 0,
        )
        values: list[bytes] = []
        back_tags: list[bytes] = []
        done: set[int] = set()
        finished: dict[int, memoryview] = {}
        self.progress("received", 0.0)
        self.progress("reblinded", 0.0)
        with ThreadPoolExecutor(1) as pool:
            theirs = Inbound(
                peer.set_size,
                limits,
                "the other owner's blinded set",
                transform=lambda _, points: blind_inbound(pool, points, alpha),
            )
            mine = Inbound(n, limits, "our set, reblinded by the other owner")
            while done != {f.OWN, f.REBLINDED}:
                self.check_wanted()
                frame = _next(frames, "the end of its sets")
                if isinstance(frame, f.Points) and frame.kind == f.OWN and f.OWN not in done:
                    theirs.add(frame.seq, frame.points)
                    self.progress("received", theirs.received / max(1, peer.set_size))
                    count = len(frame.points) // group.POINT_BYTES
                    if len(frame.values) != count * ncols * ct:
                        raise InvalidArgument("a batch whose values do not match its points")
                    values.append(frame.values)
                elif (
                    isinstance(frame, f.Points)
                    and frame.kind == f.REBLINDED
                    and f.REBLINDED not in done
                ):
                    mine.add(frame.seq, frame.points)
                    self.progress("reblinded", mine.received / max(1, n))
                    count = len(frame.points) // group.POINT_BYTES
                    if len(frame.tags) != (count * TAG_BYTES if tags is not None else 0):
                        raise InvalidArgument("a batch whose tags do not match its points")
                    back_tags.append(frame.tags)
                elif isinstance(frame, f.Done) and frame.kind in (f.OWN, f.REBLINDED):
                    finished[frame.kind] = (theirs if frame.kind == f.OWN else mine).finish()
                    done.add(frame.kind)
                    self.progress("received" if frame.kind == f.OWN else "reblinded", 1.0)
                elif isinstance(frame, f.Release) and frame.report.error is not None:
                    raise _refused_by_peer(frame.report)
                else:
                    raise InvalidArgument(f"protocol error: an unexpected {type(frame).__name__}")
        mine_all, theirs_all = finished[f.REBLINDED], finished[f.OWN]
        self.progress("matched", 0.0)
        if plan.group_side is None and not valued:
            counts = np.array([intersection_size(mine_all, theirs_all)], dtype=np.int64)
            group_of = None
        else:
            group_of, counts = self._match_groups(
                rows, mine_all, b"".join(back_tags), theirs_all, tags
            )
        self.progress("matched", 1.0)
        return self._release(
            decision, rows, peer, k, counts, group_of, values, pk, ncols, frames, outbox
        )

    def _session(self, decision: Decision, rows: SideRows, peer: f.Hello) -> Session:
        return Session(
            grant_id=decision.grant.id,
            session=self.env.request_id,
            peer=self.plan.sides[1 - self.side].node,
            own_size=len(rows.items),
            own_digest=rows.digest,
            peer_size=peer.set_size,
        )

    def _finish(self, frames: Iterator[f.Frame]) -> OwnerReport:
        """The other owner's release (its receipt), or its refusal."""
        frame = _expect(frames, f.Release, "its release")
        if frame.report.error is not None:
            raise _refused_by_peer(frame.report)
        report: OwnerReport = frame.report
        return report

    def _match_groups(
        self,
        rows: SideRows,
        mine: memoryview,
        mine_tags: bytes,
        theirs: memoryview,
        tags: _Tags | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per row of the other owner's (shuffled) set: the group of ours it matched, or
        -1; and the number of matches per group. Grouped here, an empty side has no group:
        a phantom one, noised past k under DP, had its labels read where there were none
        (review, 2026-12-04); an ungrouped join with sums counts in its one group 0."""
        grouped = self.plan.group_side == self.side
        n_groups = len(rows.groups) if grouped else max(1, len(rows.groups))
        a = np.frombuffer(mine, dtype="S32")
        gi = (
            tags.open(mine_tags, len(rows.groups))
            if tags is not None
            else np.zeros(len(a), dtype=np.int64)
        )
        b = np.frombuffer(theirs, dtype="S32")
        order = np.argsort(a, kind="stable")
        a_sorted = a[order]
        group_of = np.full(len(b), -1, dtype=np.int64)
        if len(a_sorted) and len(b):
            pos = np.searchsorted(a_sorted, b)
            pos[pos >= len(a_sorted)] = 0
            hit = a_sorted[pos] == b
            group_of[hit] = gi[order][pos[hit]]
        counts = np.bincount(group_of[group_of >= 0], minlength=n_groups)
        return group_of, counts

    def _release(
        self,
        decision: Decision,
        rows: SideRows,
        peer: f.Hello,
        k: int,
        counts: np.ndarray,
        group_of: np.ndarray | None,
        values: list[bytes],
        pk: paillier.PublicKey | None,
        ncols: int,
        frames: Iterator[f.Frame],
        outbox: _Outbox,
    ) -> Protected:
        """What leaves: groups of at least k matched rows (noisy counts under DP, as a
        query's), then, for a join with values, their sums opened by the value owner; a
        group whose summed column has a value in fewer than k rows is withheld too."""
        epsilon = _dp_epsilon(decision.epsilon, peer.epsilon)
        share = epsilon / (1 + 2 * ncols)  # counts; per value column its sum and its rows
        # Under DP every group of ours is noised, also one with no match: a group shown
        # must not say by its presence that it had one.
        present = [
            g for g in range(len(counts)) if counts[g] > 0 or group_of is None or epsilon > 0
        ]
        # what the other owner's release of the sums takes, its opened sums written out
        # in decimal (~1.2 bytes a ciphertext byte): twice a ciphertext a cell bounds it,
        # so its own size check never refuses what this one let through (review,
        # 2026-12-05)
        cell = ncols * 2 * (pk.ciphertext_bytes if pk is not None else 0)
        limit = self.o.pipeline.max_payload_bytes
        too_large = (
            "the sums of the released groups do not fit one message: group by coarser columns"
        )
        if epsilon > 0 and decision.epsilon <= 0 and len(present) * cell > limit:
            # The other owner's DP alone: its epsilon never reaches its budget unless it
            # releases, so the refusal may not read the noise; judged on every group
            # noised (each may pass k), before any is drawn (review, 2026-12-05).
            raise ResourceExhausted(too_large)
        shown = {g: int(counts[g]) for g in present}
        if epsilon > 0 and present:
            noise, _ = laplace_noise(len(present), 1.0, share)
            shown = {g: max(0, round(counts[g] + e)) for g, e in zip(present, noise, strict=True)}
        keep = [g for g in present if shown[g] >= k]
        if len(keep) * cell > limit:
            # which groups are kept is read from the noise under DP: spent all the same
            # (the release pipeline), not a free sample of it (review, 2026-12-05)
            if decision.epsilon > 0:  # charged as a release would be (below)
                raise NoisedTooLarge(too_large, epsilon=epsilon)
            raise ResourceExhausted(too_large)
        total = sum(shown[g] for g in keep) if keep else -1
        self.check_wanted()  # the other owner releases once it has the tally
        outbox.put(f.Tally(total, decision.min_group_size, tuple(shown[g] for g in keep)))
        if epsilon > 0 and decision.epsilon > 0:  # our noise is out: no end is free now
            self.noise_out = epsilon
        opened: list[list[tuple[int, int]]] = []
        if pk is not None and keep and group_of is not None:
            opened = self._open_sums(
                pk, ncols, values, group_of, keep, counts, shown, frames, outbox, epsilon
            )
        outbox.put(None)
        peer_report = self._finish(frames)
        table, groups = self._table(rows, keep, shown, opened, peer, k)
        released = sum(shown[g] for g in groups) if groups else -1
        facts = {"groups_released": len(groups), "min_group_size": k}
        if self.plan.group_side is None:
            facts["intersection"] = released
        ipc = to_ipc(table)
        result = _Matched(released, k, len(groups), peer_report, ipc)
        spent = epsilon if decision.epsilon > 0 else 0.0
        return Protected(ipc, spent, facts, result)

    def _open_sums(
        self,
        pk: paillier.PublicKey,
        ncols: int,
        values: list[bytes],
        group_of: np.ndarray,
        keep: list[int],
        counts: np.ndarray,
        shown: dict[int, int],
        frames: Iterator[f.Frame],
        outbox: _Outbox,
        epsilon: float = 0.0,
    ) -> list[list[tuple[int, int]]]:
        """Per value column and released group: (sum, rows with a value), from the
        product of the matched rows' ciphertexts, masked, opened by the value owner
        (with its noise under ``epsilon``), unmasked here, and each checked against what
        the group's rows can add up to."""
        ct = pk.ciphertext_bytes
        # Summed batch by batch as they came, each let go once summed: the peak is the
        # received batches and one batch's working set. A copy of every matched row's
        # ciphertexts (and their ints) beside the batches took about 3 x the 1 GiB a
        # session may hold (review, 2026-12-05).
        products: list[dict[str, int]] = [{} for _ in range(ncols)]
        start = 0
        for b, held in enumerate(values):
            size = len(held) // (ncols * ct)
            local = group_of[start : start + size]
            start += size
            hit = np.flatnonzero(np.isin(local, keep)).tolist()
            if hit:
                names: list[str | None] = [str(int(local[i])) for i in hit]
                view = memoryview(held)
                for j in range(ncols):
                    cts = b"".join(
                        view[(i * ncols + j) * ct : (i * ncols + j + 1) * ct] for i in hit
                    )
                    accumulate(pk, names, paillier.ciphertexts_from_bytes(pk, cts), products[j])
                del view
            values[b] = b""
        enc = paillier.Encryptor(pk)
        masked: list[bytes] = []
        masks: list[dict[str, int]] = []
        # Each mask sized for the most rows a group can have (a public bound), not for the
        # group's own count: the opened width would tell the value owner the count's bit
        # length, under DP too (review, 2026-12-04).
        terms = dict.fromkeys((str(g) for g in keep), MAX_SET)
        for j in range(ncols):
            sums = {str(g): products[j].get(str(g), 1) for g in keep}
            hidden, mask = mask_sums(enc, sums, PACKED_BITS, terms)
            masks.append(mask)
            masked.extend(hidden[str(g)].to_bytes(ct, "big") for g in keep)
        outbox.put(f.Sums(tuple(masked), tuple(shown[g] for g in keep)))
        opened = _expect(frames, f.Opened, "the opened sums")
        if len(opened.values) != len(masked):
            raise InvalidArgument("the other owner opened a different number of sums")
        out: list[list[tuple[int, int]]] = []
        for j in range(ncols):
            part = opened.values[j * len(keep) : (j + 1) * len(keep)]
            got = unmask({str(g): v for g, v in zip(keep, part, strict=True)}, masks[j], pk.n)
            out.append([unpack(got[str(g)]) for g in keep])
        _check_opened(out, [int(counts[g]) for g in keep], epsilon, ncols)
        return out

    def _table(
        self,
        rows: SideRows,
        keep: list[int],
        shown: dict[int, int],
        opened: list[list[tuple[int, int]]],
        peer: f.Hello,
        k: int,
    ) -> tuple[pa.Table, list[int]]:
        """The released table and its groups: a group whose summed column has
        a value in 0 < rows < k is withheld, as a query's (privacy.suppress)."""
        plan = self.plan
        columns = value_columns(plan)
        if opened:
            keep_at = [i for i in range(len(keep)) if all(not 0 < col[i][1] < k for col in opened)]
        else:
            keep_at = list(range(len(keep)))
        groups = [keep[i] for i in keep_at]
        cols: dict[str, list[Any]] = {}
        for i, name in enumerate(plan.group_outputs):
            cols[name] = [rows.groups[g][i] for g in groups]
        for agg in plan.aggregates:
            if agg.func == "count":
                cols[agg.name] = [shown[g] for g in groups]
                continue
            j = columns.index(agg.column or "")
            kind = peer.value_kinds[j]
            pairs = [opened[j][i] for i in keep_at] if opened else []
            if agg.func == "sum":
                cols[agg.name] = _column([decoded(kind, t) if c > 0 else None for t, c in pairs])
            else:
                cols[agg.name] = [float(decoded(kind, t)) / c if c > 0 else None for t, c in pairs]
        table = pa.table(cols)
        for name, desc in reversed(plan.order_by):
            order = "descending" if desc else "ascending"
            table = table.sort_by([(name, order)])
        if plan.limit is not None:
            table = table.slice(0, plan.limit)
        return table, groups


class _ResponderSession(_Session):
    def __init__(
        self,
        owner: PsiOwner,
        env: Envelope,
        plan: JoinPlan,
        side: int,
        entry: CatalogEntry,
        hello: f.Hello,
        frames: Iterator[f.Frame],
        outbox: _Outbox,
    ) -> None:
        self.o, self.env, self.plan, self.side, self.entry = owner, env, plan, side, entry
        self.hello, self.frames, self.outbox = hello, frames, outbox
        self.opened: f.Opened | None = None
        self.groups = 0
        self.failed: FedgateError | None = None
        self.sender_error: list[BaseException] = []  # the thread sending our own set
        self.stop = threading.Event()  # this side failed: the sender stops

    def _run(self, decision: Decision, deadline: float) -> Protected:
        o, env, plan = self.o, self.env, self.plan
        limits = o.settings.limits
        _check_hello(self.hello, limits)
        rows = o._rows(plan, self.side, self.entry, deadline, env.request_id)
        n = len(rows.items)
        k = max(decision.min_group_size, self.hello.min_group_size)
        m_size = self.hello.set_size
        session = Session(
            decision.grant.id, env.request_id, plan.sides[plan.matcher].node, n, rows.digest,
            m_size,
        )  # fmt: skip
        valued = plan.value_side == self.side
        epsilon = _dp_epsilon(decision.epsilon, self.hello.epsilon)
        # This owner's own protections follow its own grant, not the peer's epsilon.
        check_exact(plan, decision, decision.epsilon)
        columns = value_columns(plan) if valued else ()
        kinds, bounds, encoded = self._values(rows, columns, epsilon)
        # Remembered before any point leaves: a session that stops after the matching must
        # not buy a second, differing one for free. After every refusal that does not
        # depend on the peer's set: a session that could never run took up the grant's
        # memory of sessions (review, 2026-12-04).
        o.sessions.admit(
            session,
            k,
            "responder",
            rows.invalid,
            dp=decision.epsilon > 0,
            peer_dp=self.hello.epsilon > 0,
        )
        key = o._paillier() if valued else None
        ct = key.public.ciphertext_bytes if key is not None else 0
        room = o.pipeline.max_payload_bytes // (group.POINT_BYTES + len(columns) * ct)
        max_batch = max(1, min(o.settings.max_batch, self.hello.max_batch, room))
        self.outbox.put(
            f.Hello(
                n,
                decision.min_group_size,
                o.settings.max_batch,
                paillier_key=key.public.to_bytes() if key is not None else b"",
                epsilon=decision.epsilon,
                value_kinds=kinds,
            )
        )
        label = session_label(env.request_id, plan)
        beta = group.new_scalar()
        # Our own set goes out in an order that says nothing about our rows.
        order = permutation(n)
        items = pc.take(rows.items, pa.array(order))
        order_list = order.tolist()
        packed = [pack([col[i] for i in order_list]) for col in encoded]
        del encoded

        def send_own() -> None:
            try:
                enc = paillier.Encryptor(key.public, private=key) if key is not None else None
                for seq, (a, b) in enumerate(chunks(n, max_batch)):
                    if self.stop.is_set():  # the session failed: no more work for it
                        return
                    pts = group.blind(group.hash_to_points(label, batch(items, a, b)), beta)
                    vals = b""
                    if enc is not None:
                        flat = [col[i] for i in range(a, b) for col in packed]
                        vals = enc.encrypt_to_bytes(flat)
                    self.outbox.put(f.Points(f.OWN, seq, bytes(pts), values=vals))
                self.outbox.put(f.Done(f.OWN))
            except BaseException as exc:
                # This side's failure, not the peer's: stop here and let the main path
                # say so (it was audited as "the other owner stopped the session").
                if not isinstance(exc, FedgateError | PsiError):
                    log.exception("PSI session %s: sending our set failed", env.request_id)
                self.sender_error.append(exc)
                self.stop.set()

        sender = threading.Thread(target=send_own, name="psi-own", daemon=True)
        sender.start()
        try:
            self._send_shuffled(*self._upload(m_size, limits, beta), max_batch)
        except BaseException:
            self.stop.set()
            self._check_sender()  # it failed first: the cause, whatever followed here
            raise
        finally:
            sender.join(timeout=max(0.0, deadline - time.monotonic()))
        self._check_sender()
        tally = _expect(self.frames, f.Tally, "its tally")
        if any(size < 0 for size in tally.group_sizes) or tally.intersection != (
            sum(tally.group_sizes) if tally.group_sizes else -1
        ):
            raise InvalidArgument("a tally whose total is not the sum of its counts")
        if any(size < k for size in tally.group_sizes):
            raise FailedPrecondition("the matcher released a group under k")
        self.groups = len(tally.group_sizes)
        opened: list[int] = []
        if key is not None and tally.group_sizes:
            sums = _expect(self.frames, f.Sums, "the masked sums")
            if tuple(sums.counts) != tuple(tally.group_sizes):
                raise InvalidArgument("masked sums that do not match the released groups")
            opened = self._open(sums, key, columns, bounds, kinds, epsilon)
            self.opened = f.Opened(tuple(opened))
        # With sums, the matcher may still withhold a group whose values are too few (it
        # learns that from the opened sums): this owner records what it opened.
        facts: dict[str, int] = {"min_group_size": k}
        if key is None:
            facts.update(intersection=tally.intersection, groups_released=self.groups)
        else:
            facts.update(groups_opened=self.groups)
        payload = json.dumps(
            {"tally": tally.intersection, "groups": list(tally.group_sizes), "opened": opened}
        ).encode()
        spent = epsilon if decision.epsilon > 0 else 0.0
        return Protected(payload, spent, facts, None)

    def _values(
        self, rows: SideRows, columns: tuple[str, ...], epsilon: float
    ) -> tuple[tuple[str, ...], dict[str, tuple[float, float]], list[list[Any]]]:
        """Each value column's kind, DP bounds and fixed-point values (in row order), or
        the refusal that no peer's set could change: checked before the session is
        admitted."""
        desc = self.entry.descriptor
        declared = {spec.name: spec.type for spec in desc.columns}
        kinds = tuple(value_kind(declared[c]) for c in columns)
        bounds = dp_bounds(desc) if epsilon > 0 else {}
        missing = [c for c in columns if epsilon > 0 and c not in bounds]
        if missing:
            raise FailedPrecondition(
                f"{missing[0]!r} has no declared bounds, so its sums cannot be noised under DP"
            )
        encoded: list[list[Any]] = [
            Scale(kind_digits(kind)).encode_nullable(clamped(rows.values[index], bounds.get(c)))
            for index, (c, kind) in enumerate(zip(columns, kinds, strict=True))
        ]
        if any(abs(v) >> MAX_VALUE_BITS for col in encoded for v in col if v is not None):
            raise FailedPrecondition(
                "a value to sum is too large for the encrypted sums (over 2^130 units)"
            )
        return kinds, bounds, encoded

    def _check_sender(self) -> None:
        """The sender thread's own failure, typed, before any failure it caused here (a
        bug of this owner's must not be audited as the peer's going away)."""
        if not self.sender_error:
            return
        err = self.sender_error[0]
        if isinstance(err, PsiError):
            raise typed(err) from None
        if isinstance(err, FedgateError):
            raise err
        raise FedgateError("internal error in the PSI session (see the node log)") from None

    def _upload(self, declared: int, limits: Limits, beta: bytes) -> tuple[memoryview, bytes]:
        """The matcher's whole blinded set (and its opaque tags), checked and reblinded
        batch by batch as it arrives: the multiplications overlap the matcher's own work
        instead of following it. Nothing goes back before the whole set is in, and it
        goes back shuffled (``_send_shuffled``)."""
        tags: list[bytes] = []
        grouped = self.plan.group_side == self.plan.matcher
        with ThreadPoolExecutor(1) as pool:
            inbound = Inbound(
                declared,
                limits,
                "the matching owner's blinded set",
                transform=lambda _, points: blind_inbound(pool, points, beta),
            )
            while True:
                self._check_sender()
                frame = _next(self.frames, "the end of its set")
                if isinstance(frame, f.Points) and frame.kind == f.OWN:
                    inbound.add(frame.seq, frame.points)
                    count = len(frame.points) // group.POINT_BYTES
                    if len(frame.tags) != (count * TAG_BYTES if grouped else 0):
                        raise InvalidArgument("a batch whose tags do not match its points")
                    tags.append(frame.tags)
                elif isinstance(frame, f.Done) and frame.kind == f.OWN:
                    return inbound.finish(), b"".join(tags)
                elif isinstance(frame, f.Release) and frame.report.error is not None:
                    raise _refused_by_peer(frame.report)
                else:
                    raise InvalidArgument(f"protocol error: an unexpected {type(frame).__name__}")

    def _send_shuffled(self, points: memoryview, tags: bytes, max_batch: int) -> None:
        """The reblinded set (and its tags) shuffled as a whole, streamed back (each
        batch copied out of the shuffled array as it goes)."""
        n = len(points) // group.POINT_BYTES
        perm = permutation(n)
        shuffled = np.frombuffer(points, dtype="V32")[perm]
        shuffled_tags = np.frombuffer(tags, dtype="V16")[perm] if tags else None
        del perm
        for seq, (a, b) in enumerate(chunks(n, max_batch)):
            t = shuffled_tags[a:b].tobytes() if shuffled_tags is not None else b""
            self.outbox.put(f.Points(f.REBLINDED, seq, shuffled[a:b].tobytes(), tags=t))
        self.outbox.put(f.Done(f.REBLINDED))

    def _open(
        self,
        sums: f.Sums,
        key: paillier.PrivateKey,
        columns: tuple[str, ...],
        bounds: dict[str, tuple[float, float]],
        kinds: tuple[str, ...],
        epsilon: float,
    ) -> list[int]:
        """Decrypt the masked sums; under DP add noise to each packed sum first, to its
        value and to its count of rows with a value (the matcher removes its mask; the
        noise stays)."""
        pk = key.public
        cts = paillier.ciphertexts_from_bytes(pk, b"".join(sums.ciphertexts))
        per_col = len(sums.counts)
        if len(cts) != per_col * len(columns):
            raise InvalidArgument("masked sums that do not match the released groups")
        opened = [key.decrypt(c) for c in cts]
        if epsilon > 0 and opened:
            share = epsilon / (1 + 2 * len(columns))  # as the matcher splits it
            for j, (col, kind) in enumerate(zip(columns, kinds, strict=True)):
                lo, hi = bounds[col]
                sens = max(abs(lo), abs(hi)) * 10 ** kind_digits(kind)
                values, _ = laplace_noise(per_col, sens, share)
                rows, _ = laplace_noise(per_col, 1.0, share)
                for i in range(per_col):
                    noise = (round(values[i]) << COUNT_BITS) + round(rows[i])
                    opened[j * per_col + i] = (opened[j * per_col + i] + noise) % pk.n
        return opened
