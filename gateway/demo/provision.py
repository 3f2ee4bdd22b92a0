"""Provision a local federation from region_configs/: CA, node and user keys, membership.

This does for a whole sample federation, on one machine, what bureaus do separately in a
real one: each node and user makes its own key and CSR in its own folder, only the CSR
travels to the CA folder, and only the signed certificate travels back.
"""

from __future__ import annotations

import random
import socket
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from federation import membership as membership_mod
from federation.membership import Member, Membership, MembershipError
from gateway import identity
from gateway.client import Profile
from gateway.config import split_address, toml_string
from gateway.descriptor import check_identifier
from gateway.errors import ConfigError, InvalidArgument

REGION_DIR = Path(__file__).resolve().parents[2] / "region_configs"


@dataclass(frozen=True)
class NodePlan:
    id: str
    name: str
    org: str
    level: str
    parent: str
    listen: str
    metrics_listen: str
    engine_threads: int = 0  # 0: all cores (set lower where nodes share a machine)
    warm_worker: bool = False  # [training] warm_worker in the region's file


@dataclass(frozen=True)
class Federation:
    """What a provisioned work directory holds, for the demo, tests and benchmarks."""

    workdir: Path
    name: str
    nodes: tuple[NodePlan, ...]
    analysts: tuple[tuple[str, str], ...]  # (user id, home node)

    @property
    def ca_dir(self) -> Path:
        return self.workdir / "pki"

    @property
    def ca_cert(self) -> Path:
        return self.ca_dir / identity.CA_CERT

    @property
    def membership_path(self) -> Path:
        return self.workdir / "membership.json"

    def config_path(self, node_id: str) -> Path:
        return self.workdir / "configs" / f"{node_id}.toml"

    def node_dir(self, node_id: str) -> Path:
        return self.workdir / "nodes" / node_id

    def data_dir(self, node_id: str) -> Path:
        return self.workdir / "data" / node_id

    def profile_path(self, user_id: str, node_id: str | None = None) -> Path:
        suffix = f"-{node_id}" if node_id else ""
        return self.workdir / "profiles" / f"{user_id}{suffix}.toml"

    def operator_profile(self, node_id: str) -> Path:
        return self.profile_path(f"ops@{node_id}")

    def node(self, node_id: str) -> NodePlan:
        return next(n for n in self.nodes if n.id == node_id)


def free_port(
    host: str = "127.0.0.1", rng: random.Random | None = None, taken: set[int] | None = None
) -> int:
    """A port that is free now, chosen *below* the kernel's ephemeral range, and not one
    of ``taken`` (added to it).

    The kernel hands out ephemeral ports to outgoing connections (every gRPC client), so
    a port picked from that range can be taken by a connection before the node binds it.
    A federation's ports are picked before any of its nodes binds one: without ``taken``
    two of its nodes could be given the same port (a node then fails to start).
    """
    low, high = 20000, 32767
    try:
        eph_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
        high = min(high, eph_low - 1)
    except (OSError, ValueError, IndexError):
        pass
    rng = rng or random.Random()
    for _ in range(200):
        port = rng.randint(low, high)
        if taken is not None and port in taken:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
        if taken is not None:
            taken.add(port)
        return port
    raise ConfigError(f"no free port on {host} between {low} and {high}")


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None


def _table(region: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    """A section of a region file (empty when missing)."""
    value = region.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: [{key}] must be a table")
    return value


def _text(table: dict[str, Any], key: str, where: str, default: str | None = None) -> str:
    """A string field of a region file (``default`` when missing, if there is one)."""
    value = table.get(key, default)
    if not isinstance(value, str):
        raise ConfigError(f"{where}: {key} must be a string, got {value!r}")
    return value


def plan(
    region_dir: Path, *, free_ports: bool
) -> tuple[str, list[NodePlan], list[tuple[str, str]]]:
    fed = _read_toml(region_dir / "federation.toml")
    nodes = []
    ports: set[int] = set()  # handed out in this plan
    listed = fed.get("members", [])
    if not isinstance(listed, list) or not all(isinstance(m, dict) for m in listed):
        raise ConfigError("federation.toml: members must be [[members]] tables")
    for i, m in enumerate(listed):
        for key in ("id", "level"):
            if key not in m:
                raise ConfigError(f"federation.toml: members[{i}] has no {key!r}")
        try:
            check_identifier(_text(m, "id", f"federation.toml: members[{i}]"), "node id")
        except InvalidArgument as exc:
            raise ConfigError(f"federation.toml: members[{i}]: {exc.message}") from None
    ids = {m["id"] for m in listed}
    for m in listed:
        node_id = m["id"]
        region = _read_toml(region_dir / f"{node_id}.toml")
        where = f"{node_id}.toml"
        cfg, metrics, training = (_table(region, k, where) for k in ("node", "metrics", "training"))
        listen = _text(cfg, "listen", where, "127.0.0.1:0")
        metrics_listen = _text(metrics, "listen", where, "")
        threads = cfg.get("engine_threads", 0)
        if type(threads) is not int or not 0 <= threads <= 256:
            raise ConfigError(f"{where}: engine_threads must be a whole number 0-256")
        if free_ports:
            host, _ = split_address(listen, f"{node_id}: node.listen")
            listen = f"{host}:{free_port(host, taken=ports)}"
            metrics_listen = f"{host}:{free_port(host, taken=ports)}" if metrics_listen else ""
        nodes.append(
            NodePlan(
                id=node_id,
                name=_text(m, "name", f"federation.toml: {node_id}", node_id),
                org=_text(cfg, "org", where, "") or _text(m, "name", node_id, node_id),
                level=_text(m, "level", f"federation.toml: {node_id}"),
                parent=_text(m, "parent", f"federation.toml: {node_id}", ""),
                listen=listen,
                metrics_listen=metrics_listen,
                engine_threads=threads,
                warm_worker=training.get("warm_worker") is True,
            )
        )
    analysts = []
    listed_analysts = fed.get("analysts", [])
    if not isinstance(listed_analysts, list):
        raise ConfigError("federation.toml: analysts must be [[analysts]] tables")
    for i, a in enumerate(listed_analysts):
        if (
            not isinstance(a, dict)
            or not isinstance(a.get("id"), str)
            or not isinstance(a.get("home"), str)
            or a["home"] not in ids
        ):
            raise ConfigError(f"federation.toml: analysts[{i}] needs an id and a member as home")
        analysts.append((a["id"], a["home"]))
    return _text(fed, "federation", "federation.toml", "federation"), nodes, analysts


def _issue(
    ca_dir: Path,
    where: Path,
    stem: str,
    role: str,
    subject: str,
    org: str,
    hosts: list[str] | None = None,
) -> tuple[Path, Path]:
    """Key and CSR made in ``where``; the CA signs the CSR; the certificate goes back."""
    key_pem, csr_pem = identity.make_csr(role, subject, org, hosts)
    identity.write_private(where / f"{stem}.key", key_pem)
    requests = ca_dir / "requests"
    requests.mkdir(parents=True, exist_ok=True)
    (requests / f"{subject}.csr").write_bytes(csr_pem)
    cert = where / f"{stem}.pem"
    cert.write_bytes(identity.sign_csr(ca_dir, csr_pem))
    return cert, where / f"{stem}.key"


def _render_config(fed: Federation, n: NodePlan) -> str:
    tls = fed.node_dir(n.id) / "tls"
    lines = [
        f"# Rendered by fedgate for node {n.id}; see docs/config.md.",
        "[node]",
        f"id = {toml_string(n.id)}",
        f"org = {toml_string(n.org)}",
        f"listen = {toml_string(n.listen)}",
        f"data_dir = {toml_string(fed.node_dir(n.id))}",
        f"dataset_roots = [{toml_string(fed.data_dir(n.id))}]",
        "peer_probe_seconds = 15.0",
        *([f"engine_threads = {n.engine_threads}"] if n.engine_threads else []),
        "",
        "[tls]",
        f"ca = {toml_string(fed.ca_cert)}",
        f"cert = {toml_string(tls / 'node.pem')}",
        f"key = {toml_string(tls / 'node.key')}",
        f"crl = {toml_string(fed.ca_dir / identity.CA_CRL)}",
        "",
        "[federation]",
        f"membership = {toml_string(fed.membership_path)}",
        "",
        "[metrics]",
        f"listen = {toml_string(n.metrics_listen)}",
        *(["", "[training]", "warm_worker = true"] if n.warm_worker else []),
    ]
    return "\n".join(lines) + "\n"


def provision(
    workdir: Path,
    region_dir: Path,
    *,
    free_ports: bool = True,
    progress: Callable[[str], None] = lambda _msg: None,
) -> Federation:
    """Create everything a local federation needs in an empty ``workdir``."""
    workdir = workdir.resolve()
    if (workdir / "pki" / identity.CA_KEY).exists():
        raise ConfigError(f"{workdir} is already provisioned; use a new directory or remove it")
    name, nodes, analysts = plan(region_dir, free_ports=free_ports)
    fed = Federation(workdir, name, tuple(nodes), tuple(analysts))
    members = tuple(
        Member(id=n.id, org=n.org, address=n.listen, level=n.level, parent=n.parent, name=n.name)
        for n in nodes
    )
    try:  # everything the region files say, checked before the first key is written
        membership_mod.check(Membership(name, 1, membership_mod.now_rfc3339(), members))
        for n in nodes:
            identity.check_subject("node", n.id, n.org)
            identity.check_subject("operator", f"ops@{n.id}", n.org)
            host, _ = split_address(n.listen, f"{n.id}.toml: node.listen")
            identity.check_host(host)
            if n.metrics_listen:
                split_address(n.metrics_listen, f"{n.id}.toml: metrics.listen")
        for user, home in analysts:
            identity.check_subject("analyst", user, fed.node(home).org)
    except (MembershipError, InvalidArgument) as exc:
        raise ConfigError(f"{region_dir}: {exc}") from None
    identity.init_ca(fed.ca_dir)
    progress(f"federation CA created in {fed.ca_dir}")
    for n in nodes:
        tls = fed.node_dir(n.id) / "tls"
        host, _ = split_address(n.listen, f"{n.id}: node.listen")
        _issue(fed.ca_dir, tls, "node", "node", n.id, n.org, [host, "localhost"])
        fed.data_dir(n.id).mkdir(parents=True, exist_ok=True)
        ops = f"ops@{n.id}"
        cert, key = _issue(fed.ca_dir, workdir / "users" / ops, "user", "operator", ops, n.org)
        _write_profile(fed.operator_profile(n.id), n, fed.ca_cert, cert, key)
    progress(f"{len(nodes)} node keys and operator keys made where they live; CSRs signed")
    for user, home in analysts:
        node = fed.node(home)
        cert, key = _issue(fed.ca_dir, workdir / "users" / user, "user", "analyst", user, node.org)
        _write_profile(fed.profile_path(user), node, fed.ca_cert, cert, key)
    progress(f"{len(analysts)} analyst certificates issued")
    identity.sign_membership(fed.ca_dir, name, members, 1, fed.membership_path)
    progress(f"membership document of {len(nodes)} members signed by the CA")
    for n in nodes:
        path = fed.config_path(n.id)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_render_config(fed, n), encoding="utf-8")
    return fed


def _write_profile(path: Path, node: NodePlan, ca: Path, cert: Path, key: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(Profile(node.id, node.listen, ca, cert, key).dumps(), encoding="utf-8")
