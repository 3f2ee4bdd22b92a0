"""Config parsing names the field at fault; defaults are sane."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import load, parse
from gateway.errors import ConfigError


def _raw(tmp_path: Path) -> dict:
    for name in ("ca.pem", "node.pem", "node.key", "membership.json"):
        (tmp_path / name).write_text("x")
    return {
        "node": {"id": "anhui", "listen": "127.0.0.1:7000", "data_dir": "data"},
        "tls": {"ca": "ca.pem", "cert": "node.pem", "key": "node.key"},
        "federation": {"membership": "membership.json"},
    }


def test_defaults_and_relative_paths(tmp_path: Path) -> None:
    cfg = parse(_raw(tmp_path), base=tmp_path)
    assert cfg.data_dir == tmp_path / "data"
    assert cfg.dataset_roots == (tmp_path / "data" / "datasets",)
    assert cfg.crl is None and cfg.metrics_listen == ""
    assert cfg.workers == 16 and cfg.max_message_bytes == 4 * 1024 * 1024


def test_dataset_roots_are_resolved_like_every_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # review (2026-12-05): "~/data" was <config folder>/~/data, not the home's
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    raw = _raw(tmp_path)
    raw["node"]["dataset_roots"] = ["~/data", "rel/../x"]
    cfg = parse(raw, base=tmp_path)
    assert cfg.dataset_roots == (tmp_path / "home" / "data", tmp_path / "x")


@pytest.mark.parametrize(
    "section, field, value, message",
    [
        ("node", "id", "Bad Id", "node.id"),
        ("node", "listen", "nowhere", "node.listen"),
        ("node", "workers", 0, "node.workers"),
        # review (2026-12-05): both raised past the field's check, a traceback at start
        ("node", "data_dir", "~nosuchuser_fedgate/data", "node.data_dir: .* home folder"),
        ("node", "peer_timeout_seconds", 10**400, "node.peer_timeout_seconds must be a number"),
        ("node", "workers", "8", "node.workers must be an integer"),
        ("node", "max_message_bytes", 10, "node.max_message_bytes"),
        ("node", "peer_timeout_seconds", -1, "node.peer_timeout_seconds"),
        ("tls", "ca", "missing.pem", "tls.ca: file"),
        ("metrics", "listen", "9000", "metrics.listen"),
        ("node", "listen", "127.0.0.1:\u00b2", "node.listen"),  # "²".isdigit() is True
        ("node", "data_dir", "a\0b", "node.data_dir must be a path"),
        ("tls", "ca", ".", "tls.ca: .* is a folder"),
        ("node", "witness_seconds", float("inf"), "node.witness_seconds must be a number"),
        ("node", "witness_seconds", 1e-9, "node.witness_seconds must be a number"),
        (
            "node",
            "peer_probe_seconds",
            float("nan"),
            r"peer_probe_seconds must be .* seconds in \[",
        ),
        ("node", "peer_probe_seconds", -1, r"peer_probe_seconds must be .* seconds in \["),
        ("node", "audit_checkpoint_seconds", 0, r"checkpoint_seconds must be .* seconds in \["),
        ("node", "engine_spill_bytes", -1, "node.engine_spill_bytes"),
        ("node", "engine_memory_bytes", 1024, "node.engine_memory_bytes"),
        # review (2026-12-05): a NUL was a ValueError traceback, an empty root the config's
        # own folder
        ("node", "dataset_roots", ["ok", "a\0b"], r"node.dataset_roots\[1\] must be a path"),
        ("node", "dataset_roots", [""], r"node.dataset_roots\[0\] must be a path"),
        ("node", "dataset_roots", "data", "node.dataset_roots must be a list"),
    ],
)
def test_bad_values_name_the_field(tmp_path: Path, section, field, value, message) -> None:
    raw = _raw(tmp_path)
    raw.setdefault(section, {})[field] = value
    with pytest.raises(ConfigError, match=message):
        parse(raw, base=tmp_path)


def test_missing_sections_and_unknown_ones(tmp_path: Path) -> None:
    raw = _raw(tmp_path)
    del raw["tls"]
    with pytest.raises(ConfigError, match=r"section \[tls\] is required"):
        parse(raw, base=tmp_path)
    raw = _raw(tmp_path)
    raw["extra"] = {}
    with pytest.raises(ConfigError, match=r"unknown section \[extra\]"):
        parse(raw, base=tmp_path)


def test_every_region_config_works_once_provisioned(tmp_path: Path) -> None:
    """region_configs/*.toml are real configs: after `federation init` they all load."""
    import shutil

    from gateway.demo.provision import provision

    regions = tmp_path / "region_configs"
    shutil.copytree(Path(__file__).resolve().parents[2] / "region_configs", regions)
    fed = provision(tmp_path / ".fedgate", regions, free_ports=False)
    assert len(fed.nodes) == 7
    for node in fed.nodes:
        cfg = load(regions / f"{node.id}.toml")
        assert cfg.id == node.id and cfg.listen == node.listen
        assert cfg.cert == (tmp_path / ".fedgate" / "nodes" / node.id / "tls" / "node.pem")
        assert cfg.membership == fed.membership_path


def test_training_warm_worker_is_a_bool_and_off_by_default(tmp_path: Path) -> None:
    raw = _raw(tmp_path)
    assert not parse(raw, base=tmp_path).warm_worker
    assert parse({**raw, "training": {"warm_worker": True}}, base=tmp_path).warm_worker
    with pytest.raises(ConfigError, match="training.warm_worker must be"):
        parse({**raw, "training": {"warm_worker": "yes"}}, base=tmp_path)


def test_free_port_never_hands_out_a_port_twice_in_one_plan() -> None:
    """The random pick may repeat (the first port is still free: nothing bound it yet);
    ``taken`` makes the second pick another port, as ``provision`` relies on."""
    import random

    from gateway.demo.provision import free_port

    taken: set[int] = set()
    first = free_port(rng=random.Random(5), taken=taken)
    second = free_port(rng=random.Random(5), taken=taken)  # the same sequence again
    assert first != second and taken == {first, second}
    assert free_port(rng=random.Random(5)) == first  # without ``taken``: the repeat


def test_provision_gives_every_node_its_own_ports(tmp_path: Path) -> None:
    import shutil

    from gateway.demo.provision import provision

    regions = tmp_path / "region_configs"
    shutil.copytree(Path(__file__).resolve().parents[2] / "region_configs", regions)
    fed = provision(tmp_path / ".fedgate", regions, free_ports=True)
    ports = [a for n in fed.nodes for a in (n.listen, n.metrics_listen) if a]
    assert len(ports) >= 7 and len(set(ports)) == len(ports)


def test_files_that_are_not_a_config_are_named(tmp_path: Path) -> None:
    binary = tmp_path / "node.toml"
    binary.write_bytes(b'[node]\nid = "\xff"\n')
    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        load(binary)
    with pytest.raises(ConfigError, match="is a folder"):
        load(tmp_path)
    raw = _raw(tmp_path)
    (tmp_path / "afile").write_text("x")
    raw["node"]["data_dir"] = "afile"
    with pytest.raises(ConfigError, match="node.data_dir: .* is not a folder"):
        parse(raw, base=tmp_path)
    raw = _raw(tmp_path)
    raw["node"]["witness_seconds"] = 0  # off: allowed
    assert parse(raw, base=tmp_path).witness_seconds == 0


@pytest.mark.parametrize(
    "file, old, new, message",
    [
        ("shanghai.toml", 'org = "Shanghai Big Data Center"', "org = 5", "org must be a string"),
        ("anhui.toml", "[node]", '[node]\nengine_threads = "x"', "engine_threads must be"),
        ("federation.toml", 'level = "province"', 'level = "galaxy"', "level 'galaxy' is not"),
        ("federation.toml", 'id = "hefei"', 'id = "../hefei"', "node id '../hefei' must be"),
        ("anhui.toml", 'listen = "127.0.0.1:', 'listen = "\u00fc.example:', "neither an IP"),
        ("anhui.toml", "[node]", "node = 5\n[x]", "\\[node\\] must be a table"),
        ("federation.toml", 'home = "shanghai"', 'home = ["shanghai"]', "analysts\\[0\\] needs"),
    ],
)
def test_region_files_are_checked_before_anything_is_written(
    tmp_path: Path, file: str, old: str, new: str, message: str
) -> None:
    """A bad region file once failed after the CA and every key were made, leaving a
    folder every rerun refused as 'already provisioned'."""
    import shutil

    from gateway.demo.provision import provision

    regions = tmp_path / "region_configs"
    shutil.copytree(Path(__file__).resolve().parents[2] / "region_configs", regions)
    text = (regions / file).read_text()
    assert old in text
    (regions / file).write_text(text.replace(old, new, 1))
    with pytest.raises(ConfigError, match=message):
        provision(tmp_path / "fed", regions, free_ports=False)
    assert not (tmp_path / "fed").exists()


def test_names_with_quotes_and_backslashes_survive_the_rendered_files(tmp_path: Path) -> None:
    import shutil

    from gateway.client import Profile
    from gateway.demo.provision import provision

    regions = tmp_path / "region_configs"
    shutil.copytree(Path(__file__).resolve().parents[2] / "region_configs", regions)
    text = (regions / "shanghai.toml").read_text()
    org = 'Shanghai "Big" Data \\ Center'  # (no control character: the CA refuses one)
    written = 'org = "Shanghai \\"Big\\" Data \\\\ Center"'  # TOML escapes
    (regions / "shanghai.toml").write_text(
        text.replace('org = "Shanghai Big Data Center"', written)
    )
    workdir = tmp_path / 'we said "here" \\ there \x7f'
    fed = provision(workdir, regions, free_ports=False)
    assert load(fed.config_path("shanghai")).org == org
    profile = Profile.load(fed.operator_profile("shanghai"))
    assert profile.ca == fed.ca_cert and profile.ca.exists()


@pytest.mark.parametrize(
    "text, message",
    [
        ('node = "a"\naddress = "x:1"\nca = 5\ncert = "c"\nkey = "k"\n', "ca must be a non-empty"),
        ('node = "a"\naddress = "x:1"\ncert = "c"\nkey = "k"\n', "missing the field 'ca'"),
        # without a port gRPC would quietly dial 443 (seen by a new user)
        ('node = "a"\naddress = "localhost"\nca = "c"\ncert = "c"\nkey = "k"\n', "not host:port"),
        ('node = "a"\naddress = "x:99999"\nca = "c"\ncert = "c"\nkey = "k"\n', "not host:port"),
    ],
)
def test_a_profile_with_wrong_fields_is_named(tmp_path: Path, text: str, message: str) -> None:
    from gateway.client import Profile
    from gateway.errors import InvalidArgument

    path = tmp_path / "p.toml"
    path.write_text(text)
    with pytest.raises(InvalidArgument, match=message):
        Profile.load(path)
    with pytest.raises(InvalidArgument, match=message):
        Profile.load(str(path))  # a path as text too (the docs' Python examples)
    path.write_bytes(b'node = "\xff"\n')
    with pytest.raises(InvalidArgument, match="not a TOML text file"):
        Profile.load(path)


def test_the_profile_refusals_are_those_cli_md_quotes(tmp_path: Path) -> None:
    # review (2026-12-05): cli.md quoted "not a profile (not a TOML text file)" for text
    # that is not TOML, where the client says "is not valid TOML: ..."
    from gateway.client import Profile
    from gateway.errors import InvalidArgument

    doc = " ".join((Path(__file__).parents[2] / "docs" / "cli.md").read_text().split())
    bad = tmp_path / "p.toml"
    for content in (b'node = "a"\naddress = \n', b'node = "\xff"\n', None):
        if content is None:
            bad.unlink()
            bad.mkdir()  # a folder
        else:
            bad.write_bytes(content)
        with pytest.raises(InvalidArgument) as refused:
            Profile.load(bad)
        said = str(refused.value).replace(str(bad), "X")
        assert f"`{said.partition(': ')[0]}" in doc  # tomllib's own words may change
