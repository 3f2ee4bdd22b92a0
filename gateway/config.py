"""Node configuration (TOML). Every error names the field or path at fault.

The schema is documented field by field in docs/config.md; keep the two in step.
Relative paths are resolved against the directory of the config file.
"""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.descriptor import check_identifier
from gateway.errors import ConfigError, InvalidArgument
from gateway.limits import RATED, LimitSettings, Rate, streams_per_node

DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
DEFAULT_LOG_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_LOG_BACKUPS = 3
# What the engine's scans may write to disk when they do not fit in memory (a sort, a
# large group-by). DuckDB's own default is 90 % of the free disk, in ./.tmp of whatever
# folder the node was started from.
DEFAULT_SPILL_BYTES = 4 * 1024**3
_KNOWN = {
    "node": {
        "id",
        "org",
        "listen",
        "data_dir",
        "workers",
        "max_message_bytes",
        "peer_timeout_seconds",
        "dataset_roots",
        "peer_probe_seconds",
        "audit_checkpoint_seconds",
        "witness_seconds",
        "engine_threads",
        "engine_spill_bytes",
        "engine_memory_bytes",
        "log_max_bytes",
        "log_backups",
    },
    "tls": {"ca", "cert", "key", "crl"},
    "federation": {"membership"},
    "metrics": {"listen"},
    "training": {"warm_worker"},
    "limits": {
        "streams_per_caller",
        "streams_per_node",
        "streams",
        "calls_per_caller",
        "calls_per_node",
        "calls",
        "stream_max_seconds",
        "callers",
        "rates",
    },
}


@dataclass(frozen=True)
class NodeConfig:
    id: str
    org: str
    listen: str
    data_dir: Path
    ca: Path
    cert: Path
    key: Path
    crl: Path | None
    membership: Path
    metrics_listen: str
    workers: int = 16
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    peer_timeout_seconds: float = 5.0
    peer_probe_seconds: float = 15.0
    dataset_roots: tuple[Path, ...] = ()
    audit_checkpoint_seconds: float = 1.0
    witness_seconds: float = 30.0
    engine_threads: int = 0  # DuckDB threads; 0: every core of the machine
    engine_spill_bytes: int = DEFAULT_SPILL_BYTES  # a scan's disk beyond memory; 0: none
    engine_memory_bytes: int = 0  # the engine's memory; 0: DuckDB's 80 % of the machine's
    log_max_bytes: int = DEFAULT_LOG_MAX_BYTES  # node.log rotates at this size
    log_backups: int = DEFAULT_LOG_BACKUPS  # rotated files kept: node.log.1 ...
    limits: LimitSettings = field(default_factory=LimitSettings)  # [limits]; for 16 workers
    # [training] warm_worker: start the forkserver that training runs are forked from
    # with the node (~100 MB held, ~0.4 s of CPU once) rather than with its first run
    warm_worker: bool = False
    source: Path | None = None


def _as_toml(value: object) -> str:
    """A value as the config file spells it (``true``, not Python's ``True``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return toml_string(value)
    return repr(value)


def toml_string(value: object) -> str:
    """``value`` as a TOML basic string. A JSON string is one, but for DEL (U+007F),
    which JSON leaves raw and TOML refuses; non-ASCII stays as it is (JSON's surrogate
    pair escapes of astral characters are not TOML)."""
    return json.dumps(str(value), ensure_ascii=False).replace("\x7f", "\\u007f")


def is_port(text: str) -> bool:
    """A port number as written: 1 to 5 ASCII digits ("²".isdigit() is True), 0-65535."""
    return 0 < len(text) <= 5 and text.isascii() and text.isdigit() and int(text) <= 65535


def split_address(value: str, field: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not is_port(port):
        raise ConfigError(f"{field}: {value!r} is not host:port")
    return host, int(port)


def _get(section: dict[str, Any], name: str, field: str, kind: type, default: Any = ...) -> Any:
    if name not in section:
        if default is ...:
            raise ConfigError(f"{field} is required")
        return default
    value = section[name]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        try:
            value = float(value)
        except OverflowError:  # TOML integers have no bound; floats end near 1e308
            raise ConfigError(f"{field} must be a number, got one too large") from None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        names = {
            int: "an integer",
            float: "a number",
            str: "a string",
            list: "a list",
            dict: "a table",
        }
        shown = _as_toml(value)
        raise ConfigError(f"{field} must be {names.get(kind, kind.__name__)}, got {shown}")
    return value


def _path(base: Path, section: dict[str, Any], name: str, field: str) -> Path:
    return _resolved(base, _get(section, name, field, str), field)


def _resolved(base: Path, value: str, field: str) -> Path:
    if not value or "\0" in value:
        raise ConfigError(f"{field} must be a path, got {value!r}")
    try:
        home = Path(value).expanduser()  # "~/x" is the home's, not "./~"
    except RuntimeError:  # "~user/x" of no such user, or no home known
        raise ConfigError(f"{field}: {value!r} names a home folder that does not exist") from None
    return (base / home).resolve()


def _file(base: Path, section: dict[str, Any], name: str, field: str, must_exist: bool) -> Path:
    path = _path(base, section, name, field)
    if must_exist and path.is_dir():
        raise ConfigError(f"{field}: {path} is a folder, not a file")
    if must_exist and not path.is_file():
        raise ConfigError(f"{field}: file {path} does not exist")
    return path


def _seconds(
    node: dict[str, Any], name: str, default: float, least: float, most: float, *, off: bool
) -> float:
    """A finite interval in [least, most], or 0 where ``off`` allows the job to be off."""
    value = _get(node, name, f"node.{name}", float, default)
    if not ((off and value == 0) or (math.isfinite(value) and least <= value <= most)):
        zero = " (0 switches it off)" if off else ""
        raise ConfigError(f"node.{name} must be a number of seconds in [{least:g}, {most:g}]{zero}")
    return value


def load(path: Path) -> NodeConfig:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a folder") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    return parse(raw, base=path.parent.resolve(), source=path)


def parse(raw: dict[str, Any], *, base: Path, source: Path | None = None) -> NodeConfig:
    for section, value in raw.items():
        if section not in _KNOWN:
            raise ConfigError(f"unknown section [{section}] (known: {', '.join(sorted(_KNOWN))})")
        if not isinstance(value, dict):
            raise ConfigError(f"[{section}] must be a table")
        unknown = set(value) - _KNOWN[section]
        if unknown:
            raise ConfigError(f"unknown field {section}.{sorted(unknown)[0]}")
    node = raw.get("node")
    if node is None:
        raise ConfigError("section [node] is required")
    tls = raw.get("tls")
    if tls is None:
        raise ConfigError("section [tls] is required")
    fed = raw.get("federation")
    if fed is None:
        raise ConfigError("section [federation] is required")
    metrics = raw.get("metrics", {})
    limits = raw.get("limits", {})
    training = raw.get("training", {})
    warm_worker = _get(training, "warm_worker", "training.warm_worker", bool, False)

    node_id = _get(node, "id", "node.id", str)
    try:
        check_identifier(node_id, "node.id")
    except InvalidArgument as exc:
        raise ConfigError(exc.message) from None
    listen = _get(node, "listen", "node.listen", str)
    if split_address(listen, "node.listen")[1] == 0:  # a port no peer or profile would know
        raise ConfigError(f"node.listen: {listen!r} names port 0: give the node's own port")
    metrics_listen = _get(metrics, "listen", "metrics.listen", str, "")
    if metrics_listen:
        split_address(metrics_listen, "metrics.listen")
    data_dir = _path(base, node, "data_dir", "node.data_dir")
    if data_dir.exists() and not data_dir.is_dir():
        raise ConfigError(f"node.data_dir: {data_dir} is not a folder")
    workers = _get(node, "workers", "node.workers", int, 16)
    if not 2 <= workers <= 256:  # one must stay free of streams (review, 2026-12-04)
        raise ConfigError("node.workers must be between 2 and 256")
    max_bytes = _get(
        node, "max_message_bytes", "node.max_message_bytes", int, DEFAULT_MAX_MESSAGE_BYTES
    )
    if not 64 * 1024 <= max_bytes <= 256 * 1024 * 1024:  # a catalog of 7 is 1.4 KB
        raise ConfigError("node.max_message_bytes must be between 64 KiB and 256 MiB")
    timeout = _get(node, "peer_timeout_seconds", "node.peer_timeout_seconds", float, 5.0)
    if not 0 < timeout <= 600:
        raise ConfigError("node.peer_timeout_seconds must be in (0, 600]")
    probe = _seconds(node, "peer_probe_seconds", 15.0, 0.05, 86400, off=True)
    checkpoint = _seconds(node, "audit_checkpoint_seconds", 1.0, 0.05, 3600, off=False)
    witness = _seconds(node, "witness_seconds", 30.0, 0.05, 86400, off=True)
    engine_threads = _get(node, "engine_threads", "node.engine_threads", int, 0)
    if not 0 <= engine_threads <= 256:
        raise ConfigError("node.engine_threads must be between 0 (all cores) and 256")
    spill = _get(node, "engine_spill_bytes", "node.engine_spill_bytes", int, DEFAULT_SPILL_BYTES)
    if not 0 <= spill <= 1024**4:
        raise ConfigError("node.engine_spill_bytes must be between 0 (never spill) and 1 TiB")
    memory = _get(node, "engine_memory_bytes", "node.engine_memory_bytes", int, 0)
    if memory and not 64 * 1024**2 <= memory <= 1024**4:
        raise ConfigError("node.engine_memory_bytes must be 0 (DuckDB's default) or 64 MiB-1 TiB")
    log_max_bytes = _get(node, "log_max_bytes", "node.log_max_bytes", int, DEFAULT_LOG_MAX_BYTES)
    if not 64 * 1024 <= log_max_bytes <= 1024 * 1024 * 1024:
        raise ConfigError("node.log_max_bytes must be between 64 KiB and 1 GiB")
    log_backups = _get(node, "log_backups", "node.log_backups", int, DEFAULT_LOG_BACKUPS)
    if not 1 <= log_backups <= 100:
        raise ConfigError("node.log_backups must be between 1 and 100")
    roots_raw = _get(node, "dataset_roots", "node.dataset_roots", list, [])
    if not all(isinstance(r, str) for r in roots_raw):
        raise ConfigError("node.dataset_roots must be a list of paths")
    roots = tuple(
        _resolved(base, r, f"node.dataset_roots[{i}]") for i, r in enumerate(roots_raw)
    ) or (data_dir / "datasets",)
    crl = _file(base, tls, "crl", "tls.crl", must_exist=True) if "crl" in tls else None
    return NodeConfig(
        id=node_id,
        org=_get(node, "org", "node.org", str, ""),
        listen=listen,
        data_dir=data_dir,
        ca=_file(base, tls, "ca", "tls.ca", must_exist=True),
        cert=_file(base, tls, "cert", "tls.cert", must_exist=True),
        key=_file(base, tls, "key", "tls.key", must_exist=True),
        crl=crl,
        membership=_file(base, fed, "membership", "federation.membership", must_exist=True),
        metrics_listen=metrics_listen,
        workers=workers,
        max_message_bytes=max_bytes,
        peer_timeout_seconds=timeout,
        peer_probe_seconds=probe,
        dataset_roots=roots,
        audit_checkpoint_seconds=checkpoint,
        witness_seconds=witness,
        engine_threads=engine_threads,
        engine_spill_bytes=spill,
        engine_memory_bytes=memory,
        log_max_bytes=log_max_bytes,
        log_backups=log_backups,
        limits=_limits(limits, workers),
        warm_worker=warm_worker,
        source=source,
    )


def _limits(section: dict[str, Any], workers: int) -> LimitSettings:
    """``[limits]``: defaults scaled to ``workers`` (``LimitSettings.for_workers``)."""
    default = LimitSettings.for_workers(workers)

    def number(name: str, kind: type, low: float, high: float, default: Any) -> Any:
        value = _get(section, name, f"limits.{name}", kind, default)
        if not low <= value <= high:
            raise ConfigError(f"limits.{name} must be between {low:.0f} and {high:.0f}")
        return value

    # streams hold their worker for minutes: one worker at least stays for unary calls
    streams = number("streams", int, 1, workers - 1, default.streams)
    rates = dict(default.rates)
    table = _get(section, "rates", "limits.rates", dict, {})
    for name, value in table.items():
        where = f"limits.rates.{name}"
        if name not in RATED:
            raise ConfigError(f"unknown method {where} (rated: {', '.join(sorted(RATED))})")
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a table {{ per_second = <number>, burst = <n> }}")
        unknown = sorted(set(value) - {"per_second", "burst"})
        if unknown:
            raise ConfigError(f"unknown field {where}.{unknown[0]} (known: per_second, burst)")
        per_second = _get(value, "per_second", f"{where}.per_second", float, rates[name].per_second)
        burst = _get(value, "burst", f"{where}.burst", int, rates[name].burst)
        if not 0 < per_second <= 1_000_000:
            raise ConfigError(f"{where}.per_second must be in (0, 1000000]")
        if not 1 <= burst <= 1_000_000:
            raise ConfigError(f"{where}.burst must be between 1 and 1000000")
        rates[name] = Rate(per_second, burst)
    per_caller = number("streams_per_caller", int, 1, streams, min(2, streams))
    per_node = streams_per_node(streams, per_caller)
    return LimitSettings(
        streams_per_caller=per_caller,
        streams_per_node=number("streams_per_node", int, 1, streams, per_node),
        streams=streams,
        calls_per_caller=number("calls_per_caller", int, 1, workers, default.calls_per_caller),
        calls_per_node=number("calls_per_node", int, 1, workers, default.calls_per_node),
        calls=number("calls", int, workers, 100_000, default.calls),
        stream_max_seconds=number("stream_max_seconds", float, 1, 86_400, 600.0),
        callers=number("callers", int, 100, 1_000_000, default.callers),
        rates=rates,
    )
