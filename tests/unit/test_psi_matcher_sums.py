"""The matcher's part of a join with sums, called on its own (no network, no node)."""

from __future__ import annotations

import threading
import time
import tracemalloc
import types
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from federation.envelope import Envelope, Requester
from federation.psi import frames as f
from federation.psi import paillier
from federation.psi.join_sums import pack
from federation.psi.stream import Limits
from gateway.errors import InvalidArgument, NoisedTooLarge, ResourceExhausted
from gateway.planning import join_or_refuse
from gateway.roles import psi_owner as po

SQL = "SELECT l.g, SUM(r.v) AS s FROM anhui.l l JOIN jiangsu.r r ON l.id = r.id GROUP BY l.g"


@pytest.fixture(scope="module")
def key() -> paillier.PrivateKey:
    return paillier.PrivateKey.generate()


def _session(max_payload_bytes: int = 4 << 20) -> po._MatcherSession:
    plan = join_or_refuse(SQL)
    env = Envelope(
        "req1", Requester("analyst", "x", "org"), "shanghai", "psi", plan.sql,
        deadline=time.monotonic() + 60,
    )  # fmt: skip
    owner = types.SimpleNamespace(
        pipeline=types.SimpleNamespace(max_payload_bytes=max_payload_bytes)
    )
    return po._MatcherSession(
        owner,
        env,
        plan,
        0,
        None,
        lambda *_: None,
        threading.Event(),  # type: ignore[arg-type]
    )


class _Outbox:
    def __init__(self) -> None:
        self.sent: list[Any] = []

    def put(self, frame: Any) -> None:
        self.sent.append(frame)


def test_peer_dp_alone_refuses_sums_that_cannot_fit_before_any_noise(
    key: paillier.PrivateKey,
) -> None:
    """Review (2026-12-05): when only the other owner wants DP, the matcher noised its
    counts with the other owner's epsilon and then refused, for free, a join whose kept
    groups' sums could not fit: which groups pass k is read from that noise, and no
    owner was charged for it. Now the refusal is judged on every group noised (each may
    pass k), before any noise is drawn: the same whatever the counts."""
    session = _session(max_payload_bytes=1 << 20)
    groups = 3000  # x 1 column x 2 x 512 bytes: 3 MB, over the 1 MB payload
    decision = types.SimpleNamespace(epsilon=0.0, min_group_size=10, grant=None)
    peer = f.Hello(10, 1, 4096, epsilon=1.0, value_kinds=("int",))
    outbox = _Outbox()
    with pytest.raises(ResourceExhausted) as err:
        session._release(
            decision, None, peer, 10**6, np.zeros(groups, dtype=np.int64),  # type: ignore[arg-type]
            np.full(10, -1), [], key.public, 1, iter([]), outbox,  # type: ignore[arg-type]
        )  # fmt: skip
    assert not isinstance(err.value, NoisedTooLarge)  # nothing of this owner's to charge
    assert outbox.sent == []  # no tally: nothing drawn left


def test_the_matched_ciphertexts_are_summed_batch_by_batch(key: paillier.PrivateKey) -> None:
    """Review (2026-12-05): for each value column the matcher joined every matched row's
    ciphertext into one new bytes object and then a list of ints, beside the received
    batches: about 3 x the documented 1 GiB a session. Now each received batch is
    summed on its own: the peak is the received bytes and a batch's working set."""
    rows, per_batch, groups = 2000, 250, 4
    values = [v % 97 for v in range(rows)]
    enc = paillier.Encryptor(key.public, private=key)
    batches = [
        enc.encrypt_to_bytes(pack(values[a : a + per_batch])) for a in range(0, rows, per_batch)
    ]
    received = sum(map(len, batches))
    rng = np.random.default_rng(7)
    group_of = rng.integers(-1, groups, size=rows)  # -1: no match
    keep = list(range(groups))
    counts = np.bincount(group_of[group_of >= 0], minlength=groups)
    shown = {g: int(counts[g]) for g in keep}
    outbox = _Outbox()

    def frames() -> Iterator[f.Frame]:
        (sums,) = [s for s in outbox.sent if isinstance(s, f.Sums)]
        opened = (key.decrypt(int.from_bytes(c, "big")) for c in sums.ciphertexts)
        yield f.Opened(tuple(opened))

    session = _session()
    tracemalloc.start()
    try:
        batches = [bytes(b) for b in batches]  # the received batches, traced
        tracemalloc.reset_peak()
        opened = session._open_sums(
            key.public,
            1,
            batches,
            group_of,
            keep,
            counts,
            shown,
            frames(),
            outbox,  # type: ignore[arg-type]
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    want = [
        (sum(v for v, g in zip(values, group_of, strict=True) if g == k), int(counts[k]))
        for k in keep
    ]
    assert opened == [want]
    assert peak <= 1.3 * received, f"peak {peak / received:.2f} x the received ciphertexts"


def test_a_scale_the_matcher_cannot_read_back_is_refused_in_the_hello(
    key: paillier.PrivateKey,
) -> None:
    """Review (2026-12-05): a hello with ``decimal(38,30)`` passed, and the session failed
    only when the table was built, after the value owner had spent and signed."""
    session = _session()
    session.o.settings = po.Settings(Limits())  # type: ignore[attr-defined]
    peer = f.Hello(10, 1, 4096, paillier_key=key.public.to_bytes(), value_kinds=("decimal(38,30)",))
    decision = types.SimpleNamespace(epsilon=0.0, min_group_size=5, grant=None, level="L1")
    rows = types.SimpleNamespace(items=[])
    with pytest.raises(InvalidArgument, match=r"decimal\(38,30\).*scale of at most 18"):
        session._exchange(decision, rows, b"", None, iter([peer]), _Outbox())  # type: ignore[arg-type]


@pytest.mark.parametrize("epsilon", [0.0, 1.0])
def test_an_opened_sum_beyond_what_its_rows_can_add_up_to_is_refused(
    key: paillier.PrivateKey, epsilon: float
) -> None:
    """Review (2026-12-05): an opened value that unmasked to a ~600-digit sum reached
    Arrow (decimal128(38, 0)) and failed there, INTERNAL. Each unpacked sum is now
    bounded by its group's matched rows (and the noise's tail under DP)."""
    enc = paillier.Encryptor(key.public, private=key)
    batch = enc.encrypt_to_bytes(pack([5] * 20))
    group_of = np.zeros(20, dtype=np.int64)
    counts = np.array([20])
    outbox = _Outbox()
    honest = [True]

    def frames() -> Iterator[f.Frame]:
        (sums,) = [s for s in outbox.sent if isinstance(s, f.Sums)]
        if honest[0]:
            yield f.Opened(tuple(key.decrypt(int.from_bytes(c, "big")) for c in sums.ciphertexts))
        else:
            yield f.Opened((key.public.n // 3,))  # whatever it likes: ~600 digits unmasked

    noise = (epsilon,) if epsilon else ()  # the default: no DP
    session = _session()
    got = session._open_sums(
        key.public,
        1,
        [batch],
        group_of,
        [0],
        counts,
        {0: 20},
        frames(),
        outbox,
        *noise,  # type: ignore[arg-type]
    )
    assert got == [[(100, 20)]]
    honest[0], outbox.sent = False, []
    with pytest.raises(InvalidArgument, match="beyond what the group's rows can add up to"):
        session._open_sums(
            key.public,
            1,
            [batch],
            group_of,
            [0],
            counts,
            {0: 20},
            frames(),
            outbox,
            *noise,  # type: ignore[arg-type]
        )


def test_an_integer_sum_beyond_38_digits_is_a_wider_decimal_not_an_error() -> None:
    column = po._column([10**45, 5, None])
    assert column.type == pa.decimal256(76, 0) and column[0].as_py() == 10**45
