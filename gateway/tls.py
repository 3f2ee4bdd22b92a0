"""gRPC mutual-TLS credentials and channels, the one way every fedgate connection is made."""

from __future__ import annotations

from pathlib import Path

import grpc

from gateway.identity import NODE_DNS_SUFFIX

# What each file must hold: gRPC given a certificate as the key fails only at connect,
# with "connection refused" after a line of its own on stderr.
_PEM_MARK = {
    "CA": b"-----BEGIN CERTIFICATE-----",
    "certificate": b"-----BEGIN CERTIFICATE-----",
    "key": b"PRIVATE KEY-----",
}


def _read(path: Path, what: str) -> bytes:
    from gateway.errors import InvalidArgument

    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InvalidArgument(f"{what} file {path} does not exist") from None
    except IsADirectoryError:
        raise InvalidArgument(f"{what} file {path} is a folder") from None
    if _PEM_MARK[what] not in data:
        kind = "private key" if what == "key" else "certificate"
        raise InvalidArgument(f"{what} file {path} holds no PEM {kind}")
    return data


def check_pair(cert: Path, key: Path) -> None:
    """A client's certificate and key, checked before connecting: gRPC given a key that is
    not the certificate's, or one under a passphrase, fails only in the handshake, which
    the node then seems to have refused ("the node refused our certificate")."""
    from gateway import identity
    from gateway.errors import InvalidArgument

    _read(cert, "certificate")
    _read(key, "key")
    private = identity.load_key(key)  # the passphrase check that node start makes
    if not identity.is_key_of(private, identity.load_cert(cert)):
        raise InvalidArgument(f"key file {key} is not the private key of {cert}")


def server_credentials(ca: Path, cert: Path, key: Path) -> grpc.ServerCredentials:
    """Require a client certificate signed by the federation CA on every connection."""
    return grpc.ssl_server_credentials(
        [(_read(key, "key"), _read(cert, "certificate"))],
        root_certificates=_read(ca, "CA"),
        require_client_auth=True,
    )


def channel_options(max_message_bytes: int, node_id: str) -> list[tuple[str, object]]:
    # The server must prove it is *this* node: its certificate carries <id>.node.fedgate.
    return [
        ("grpc.ssl_target_name_override", node_id + NODE_DNS_SUFFIX),
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.enable_retries", 0),
    ]


def secure_channel(
    address: str,
    node_id: str,
    *,
    ca: Path,
    cert: Path | None,
    key: Path | None,
    max_message_bytes: int = 4 * 1024 * 1024,
) -> grpc.Channel:
    """A channel to node ``node_id`` at ``address``; cert/key may be None (tests only)."""
    creds = grpc.ssl_channel_credentials(
        root_certificates=_read(ca, "CA"),
        private_key=_read(key, "key") if key else None,
        certificate_chain=_read(cert, "certificate") if cert else None,
    )
    return grpc.secure_channel(address, creds, options=channel_options(max_message_bytes, node_id))
