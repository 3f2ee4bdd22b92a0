"""Fixtures the unit tests share."""

from __future__ import annotations

import pytest

from federation.psi.paillier import PrivateKey, PublicKey
from tests.unit.test_owner import parts  # noqa: F401 - an owner of real parts, shared


@pytest.fixture(scope="session")
def sk() -> PrivateKey:
    """One Paillier key for the session: a 2048-bit key takes up to a second to make."""
    return PrivateKey.generate()


@pytest.fixture(scope="session")
def pk(sk: PrivateKey) -> PublicKey:
    return sk.public
