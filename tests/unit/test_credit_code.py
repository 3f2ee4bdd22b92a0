from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.credit_code import (
    CHARSET,
    is_valid_credit_code,
    make_credit_code,
    org_check_char,
    uscc_check_char,
    valid_mask,
)
from gateway.errors import InvalidArgument

# Published codes of real enterprises: both check characters were computed by the issuers.
PUBLISHED = [
    "91350100M000100Y43",  # example code from GB 32100 explanatory material
    "91330100716105852F",  # Alibaba (China) Co., Ltd.
    "9144030071526726XG",  # Tencent: organisation check character is 'X'
    "914403001922038216",  # Huawei Technologies Co., Ltd.
    "91440300192317458F",  # BYD Co., Ltd.
]


@pytest.mark.parametrize("code", PUBLISHED)
def test_published_codes_are_valid(code: str) -> None:
    assert is_valid_credit_code(code)


@pytest.mark.parametrize("code", PUBLISHED)
def test_make_rebuilds_published_codes(code: str) -> None:
    assert make_credit_code(code[0], code[1], code[2:8], code[8:16]) == code


@pytest.mark.parametrize("code", PUBLISHED)
def test_every_single_character_change_is_rejected(code: str) -> None:
    # 31 is prime and no weight is 0 mod 31, so any one substitution breaks the final check.
    for pos in range(len(code)):
        for ch in CHARSET:
            if ch != code[pos]:
                changed = code[:pos] + ch + code[pos + 1 :]
                assert not is_valid_credit_code(changed), changed


def test_org_check_digit_special_values() -> None:
    assert org_check_char("71526726") == "X"  # 11 - r == 10
    assert org_check_char("00000000") == "0"  # 11 - r == 11
    assert org_check_char("M000100Y") == "4"


def test_uscc_check_wraps_31_to_zero() -> None:
    # The last weight (28) is invertible mod 31, so exactly one final character makes the sum
    # 0 mod 31; only the 31 -> 0 wrap can yield the check character '0'.
    base = "91310000MA1FL123"
    zeros = [ch for ch in CHARSET if uscc_check_char(base + ch) == "0"]
    assert len(zeros) == 1
    assert {uscc_check_char(base + ch) for ch in CHARSET} == set(CHARSET)


@pytest.mark.parametrize(
    "code",
    [
        "",
        "91350100M000100Y4",  # 17 characters
        "91350100M000100Y433",  # 19 characters
        "91350100m000100Y43",  # lower case
        "91350100I000100Y43",  # I is not in the charset
        "9135010OM000100Y43",  # letter in the division code
        " 91350100M000100Y43",
    ],
)
def test_malformed_codes_are_rejected(code: str) -> None:
    assert not is_valid_credit_code(code)


def test_non_string_is_rejected() -> None:
    assert not is_valid_credit_code(None)  # type: ignore[arg-type]
    assert not is_valid_credit_code(913501001234)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "args",
    [
        ("", "1", "350100", "M000100Y"),
        ("9", "11", "350100", "M000100Y"),
        ("9", "1", "35010", "M000100Y"),
        ("9", "1", "35010A", "M000100Y"),
        ("9", "1", "350100", "M000100"),
        ("9", "1", "350100", "MO00100Y"),  # O is excluded from GB 32100
        ("I", "1", "350100", "M000100Y"),
    ],
)
def test_make_rejects_bad_parts(args: tuple[str, str, str, str]) -> None:
    with pytest.raises(InvalidArgument):
        make_credit_code(*args)


@given(
    dept=st.sampled_from(CHARSET),
    org_type=st.sampled_from(CHARSET),
    division=st.from_regex(r"\A[0-9]{6}\Z"),
    serial=st.text(alphabet=CHARSET, min_size=8, max_size=8),
)
def test_made_codes_are_valid(dept: str, org_type: str, division: str, serial: str) -> None:
    code = make_credit_code(dept, org_type, division, serial)
    assert len(code) == 18
    assert code.startswith(dept + org_type + division + serial)
    assert is_valid_credit_code(code)


def _random_codes(rng: random.Random, n: int) -> list[str]:
    return [
        make_credit_code(
            rng.choice(CHARSET),
            rng.choice(CHARSET),
            "".join(rng.choices("0123456789", k=6)),
            "".join(rng.choices(CHARSET, k=8)),
        )
        for _ in range(n)
    ]


def _mutated(rng: random.Random, code: str) -> str:
    pos = rng.randrange(len(code))
    kind = rng.randrange(6)
    if kind == 0:  # another character of the charset (or of ASCII, or beyond)
        return code[:pos] + rng.choice(CHARSET + "IOZSVaz -?\x00") + code[pos + 1 :]
    if kind == 1:
        return code[:pos] + rng.choice("éＡ中\ud800") + code[pos + 1 :]
    if kind == 2:  # two neighbours swapped
        pos = min(pos, len(code) - 2)
        return code[:pos] + code[pos + 1] + code[pos] + code[pos + 2 :]
    if kind == 3:
        return code[:pos] + code[pos + 1 :]
    if kind == 4:
        return code[:pos] + rng.choice(CHARSET) + code[pos:]
    return code.lower()


def test_valid_mask_agrees_with_the_per_code_check() -> None:
    rng = random.Random(12)
    valid = PUBLISHED + _random_codes(rng, 2000)
    mutated = [_mutated(rng, code) for code in valid for _ in range(3)]
    codes = valid + mutated + ["", "91350100M000100Y4", "91350100M000100Y433"]
    rng.shuffle(codes)
    mask = valid_mask(codes)
    assert mask.dtype == bool and mask.shape == (len(codes),)
    assert mask.tolist() == [is_valid_credit_code(code) for code in codes]
    assert 2000 <= int(mask.sum()) < len(codes) - 2000  # both verdicts are exercised


def test_valid_mask_of_only_valid_and_of_nothing() -> None:
    codes = _random_codes(random.Random(3), 50)
    assert valid_mask(codes).all()
    assert valid_mask(tuple(codes)).all()
    assert valid_mask([]).shape == (0,)


def test_valid_mask_says_false_for_what_is_not_a_string() -> None:
    code = PUBLISHED[0]
    mixed = [code, None, code.encode(), 913501001234, list(code), code]
    assert valid_mask(mixed).tolist() == [True, False, False, False, False, True]  # type: ignore[arg-type]
    sized = [code, code.encode(), list(code), "x" * 18]  # every one has a length of 18
    assert valid_mask(sized).tolist() == [True, False, False, False]  # type: ignore[arg-type]
