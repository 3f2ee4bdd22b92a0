"""Join-aggregate arithmetic: fixed-point encoding, per-group products of ciphertexts,
masking and unmasking; the whole path checked against DuckDB's SUM over the same join."""

from __future__ import annotations

import random
from decimal import Decimal

import duckdb
import numpy as np
import pytest

from federation.outcome import Code
from federation.psi.errors import PsiError
from federation.psi.join_sums import (
    MAX_DIGITS,
    STATISTICAL_BITS,
    Scale,
    accumulate,
    mask_sums,
    unmask,
    value_bits,
)
from federation.psi.paillier import Encryptor, PrivateKey, PublicKey


@pytest.fixture(scope="module")
def enc(sk: PrivateKey) -> Encryptor:
    return Encryptor(sk.public, private=sk)


def refused(code: Code = Code.INVALID_ARGUMENT) -> pytest.RaisesExc[PsiError]:
    return pytest.raises(PsiError, check=lambda e: e.code is code)


# --- Scale -------------------------------------------------------------------------------


def test_scale_is_exact_for_ints_and_decimals() -> None:
    two = Scale(2)
    assert two.encode([Decimal("12345.67")]) == [1234567]
    assert two.decode(1234567) == Decimal("12345.67")
    assert str(two.decode(1234567)) == "12345.67"
    assert two.decode(-5) == Decimal("-0.05")
    big = 10**40 + 7
    assert two.encode([big, -big]) == [big * 100, -big * 100]
    assert two.decode(big * 100) == big
    zero = Scale(0)
    assert zero.encode([5, -3, True]) == [5, -3, 1]
    decoded = zero.decode(10**50 + 1)
    assert type(decoded) is int and decoded == 10**50 + 1
    # a sum as large as a 2048-bit key allows still decodes without rounding
    huge = 3**1290
    sign, digits, exponent = Scale(18).decode(huge).as_tuple()  # type: ignore[union-attr]
    assert (sign, int("".join(map(str, digits))), exponent) == (0, huge, -18)


def test_scale_rounds_half_to_even() -> None:
    two = Scale(2)
    got = two.encode([Decimal("0.125"), Decimal("0.135"), Decimal("-0.125"), Decimal("0.1251")])
    assert got == [12, 14, -12, 13]
    assert Scale(0).encode([Decimal("2.5"), Decimal("3.5"), Decimal("-2.5")]) == [2, 4, -2]
    assert Scale(0).encode([2.5, 3.5, -0.5]) == [2, 4, 0]
    # a long decimal is rounded once, at the requested digit
    long = Decimal("0.12500000000000000000000000000000000000000001")
    assert two.encode([long]) == [13]


def test_scale_numpy_arrays_agree_with_lists() -> None:
    rng = np.random.default_rng(5)
    floats = rng.normal(0, 1e6, 1000)
    three = Scale(3)
    assert three.encode(floats) == three.encode(floats.tolist())
    ints = rng.integers(-(10**12), 10**12, 1000)
    assert three.encode(ints) == [int(v) * 1000 for v in ints.tolist()]
    decimals = np.array([Decimal("1.5"), Decimal("-2.25")], dtype=object)
    assert Scale(1).encode(decimals) == [15, -22]
    assert Scale(2).encode(np.array([0.1, 0.2, 0.3])) == [10, 20, 30]
    # beyond 2^53 once scaled, floats take the exact per-value path
    assert Scale(2).encode(np.array([1e300])) == [round(1e300 * 100)]
    assert three.encode(np.array([], dtype=np.float64)) == []


@pytest.mark.parametrize(
    "bad",
    [
        [float("nan")],
        [float("inf")],
        [1.0, float("-inf")],
        np.array([1.0, np.nan]),
        np.array([np.inf]),
        [Decimal("NaN")],
        [Decimal("Infinity")],
        [Decimal("-Infinity")],
        [Decimal("sNaN")],
        [None],
        ["12"],
        np.array(["a", "b"]),
        [1e308],  # overflows once scaled
        [Decimal("1e400")],
    ],
)
def test_scale_refuses(bad: object) -> None:
    with refused():
        Scale(2).encode(bad)  # type: ignore[arg-type]


def test_scale_digits_bounded() -> None:
    with refused():
        Scale(-1)
    with refused():
        Scale(MAX_DIGITS + 1)


def test_value_bits() -> None:
    assert value_bits([]) == 0
    assert value_bits([3, -8, 5]) == 4


# --- products, masks ---------------------------------------------------------------------


def test_accumulate_groups_and_skips(sk: PrivateKey, pk: PublicKey, enc: Encryptor) -> None:
    values = [5, -7, 11, 13, 100, -1]
    groups = ["a", None, "b", "a", None, "b"]
    cs = enc.encrypt_many(values)
    into: dict[str, int] = {}
    accumulate(pk, groups[:3], cs[:3], into)
    accumulate(pk, groups[3:], cs[3:], into)  # a second batch continues the products
    assert set(into) == {"a", "b"}
    assert all(type(c) is int for c in into.values())
    assert sk.decrypt_signed(into["a"]) == 5 + 13
    assert sk.decrypt_signed(into["b"]) == 11 - 1
    with refused():
        accumulate(pk, ["a"], cs[:2], into)


def test_mask_then_unmask(sk: PrivateKey, pk: PublicKey, enc: Encryptor) -> None:
    rng = random.Random(3)
    groups = [rng.choice("abcdefghij") for _ in range(300)]
    values = [rng.randint(-(2**40), 2**40) for _ in groups]
    into: dict[str, int] = {}
    accumulate(pk, groups, enc.encrypt_many(values), into)
    count = {g: groups.count(g) for g in set(groups)}
    masked, masks = mask_sums(enc, into, 41, count)
    assert masked.keys() == masks.keys() == into.keys()
    for g, r in masks.items():
        assert 0 <= r < 2 ** (41 + count[g].bit_length() + STATISTICAL_BITS)
        assert masked[g] != into[g]
    opened = {g: sk.decrypt(c) for g, c in masked.items()}
    plain = {g: sum(v for gg, v in zip(groups, values, strict=True) if gg == g) for g in count}
    for g in count:  # the key owner sees the masked value, not the sum
        assert opened[g] == (plain[g] + masks[g]) % pk.n
    assert unmask(opened, masks, pk.n) == plain


def test_mask_refuses_sums_too_large_for_the_key(pk: PublicKey, enc: Encryptor) -> None:
    sums = {"a": 1}
    # value bits + 1 (one term) + 40 mask bits must stay below the modulus' bit length
    limit = pk.n.bit_length() - STATISTICAL_BITS - 2
    mask_sums(enc, sums, limit - 1, {"a": 1})
    with refused(Code.FAILED_PRECONDITION):
        mask_sums(enc, sums, limit, {"a": 1})
    with refused(Code.FAILED_PRECONDITION):
        mask_sums(enc, sums, 64, {"a": 2**2000})
    with refused():
        mask_sums(enc, sums, 64, {"b": 1})


def test_unmask_checks_the_answer(pk: PublicKey) -> None:
    n = pk.n
    masks = {"a": 10, "b": 20}
    assert unmask({"a": 7, "b": 25}, masks, n) == {"a": -3, "b": 5}
    with refused():
        unmask({"a": 7}, masks, n)
    with refused():
        unmask({"a": 7, "b": 25, "c": 1}, masks, n)
    with refused():
        unmask({"a": n, "b": 25}, masks, n)
    with refused():
        unmask({"a": -1, "b": 25}, masks, n)


def test_join_sum_matches_duckdb(sk: PrivateKey, pk: PublicKey, enc: Encryptor) -> None:
    """Value owner: (id, amount DECIMAL(12,2)); matcher: (id, region). SUM(amount) by
    region over the inner join, through encode -> encrypt -> accumulate -> mask ->
    decrypt -> unmask -> decode, equals DuckDB's answer on the plain join."""
    rng = random.Random(7)
    con = duckdb.connect()
    con.execute("CREATE TABLE owner (id INTEGER, amount DECIMAL(12, 2))")
    con.execute("CREATE TABLE matcher (id INTEGER, region VARCHAR)")
    owner_rows = [(i, Decimal(rng.randint(-(10**9), 10**9)).scaleb(-2)) for i in range(1200)]
    matcher_rows = [(i, f"r{rng.randrange(20)}") for i in range(600, 2000, 2)]
    con.executemany("INSERT INTO owner VALUES (?, ?)", owner_rows)
    con.executemany("INSERT INTO matcher VALUES (?, ?)", matcher_rows)
    truth = dict(
        con.execute(
            "SELECT region, SUM(amount) FROM owner JOIN matcher USING (id) GROUP BY region"
        ).fetchall()
    )

    ids, amounts = zip(*con.execute("SELECT id, amount FROM owner").fetchall(), strict=True)
    scale = Scale(2)
    encoded = scale.encode(list(amounts))
    ciphertexts = enc.encrypt_many(encoded)  # value owner
    region_of = dict(matcher_rows)
    groups = [region_of.get(i) for i in ids]  # what the ECDH matching tells the matcher
    products: dict[str, int] = {}
    accumulate(pk, groups, ciphertexts, products)  # matcher
    count = {g: groups.count(g) for g in products}
    masked, masks = mask_sums(enc, products, value_bits(encoded), count)
    opened = {g: sk.decrypt(c) for g, c in masked.items()}  # value owner
    sums = unmask(opened, masks, pk.n)  # matcher
    got = {g: scale.decode(s) for g, s in sums.items()}
    assert got == truth
    assert len(got) == 20
