"""What a node's state remembers of who it is (review, 2026-12-04: hefei started on
anhui's data folder took over its catalog and signed into its hash chain; a node restarted
without ``tls.crl`` re-admitted every revoked certificate)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway import data_dir, identity
from gateway.errors import ConfigError
from gateway.housekeeping import check_crl
from gateway.identity import RevocationList
from gateway.state import State


def test_a_data_folder_belongs_to_the_first_node_that_used_it(tmp_path: Path) -> None:
    state = State(tmp_path / "state.sqlite3")
    try:
        data_dir.claim(state, "anhui")
        data_dir.claim(state, "anhui")  # its own restart
        with pytest.raises(
            ConfigError, match="holds the state of node 'anhui'; this is node 'hefei'"
        ):
            data_dir.claim(state, "hefei")
    finally:
        state.close()


def test_a_node_that_enforced_a_crl_does_not_start_without_one(tmp_path: Path) -> None:
    state = State(tmp_path / "state.sqlite3")
    ca = tmp_path / "ca"
    identity.init_ca(ca)
    identity.write_crl(ca)  # CRL number 2
    bundle = identity.load_bundle(ca / identity.CA_CERT)
    try:
        check_crl(state, RevocationList(None, bundle))  # never had one: fine
        with_crl = RevocationList(ca / identity.CA_CRL, bundle)
        with_crl.load()
        check_crl(state, with_crl)
        with pytest.raises(ConfigError, match="enforced CRL number 2; without tls.crl"):
            check_crl(state, RevocationList(None, bundle))
    finally:
        state.close()


def test_a_config_path_may_start_at_home_and_listen_names_a_real_port(tmp_path: Path) -> None:
    """Review (2026-12-04): ``~/x`` made a folder named ``~`` beside the config; port 0
    bound a random port no peer knew."""
    from gateway.config import parse

    for name in ("ca.pem", "node.pem", "node.key", "membership.json"):
        (tmp_path / name).write_text("x")
    raw: dict = {
        "node": {"id": "anhui", "listen": "127.0.0.1:7000", "data_dir": "~/fedgate-anhui"},
        "tls": {"ca": "ca.pem", "cert": "node.pem", "key": "node.key"},
        "federation": {"membership": "membership.json"},
    }
    assert parse(raw, base=tmp_path).data_dir == Path("~/fedgate-anhui").expanduser().resolve()
    raw["node"]["listen"] = "127.0.0.1:0"
    with pytest.raises(ConfigError, match="names port 0"):
        parse(raw, base=tmp_path)
