"""Flower's phone-home switches, off before any Flower module is imported.

Flower reads them when its modules are first imported (``flwr.app`` pulls in its
telemetry module), and a module's own imports put ``flwr`` before ours; so both packages'
``__init__`` import this module, which every import of a fedgate module runs first.
Telemetry and the update check are only reached from Flower's own entry points
(SuperLink, SuperNode, simulation, the ``flwr`` CLI), which a node never runs: the
switches are off anyway, in case one ever is. A node also points ``FLWR_HOME`` inside
its own state (``gateway.node``).

Flower also sets ``GRPC_VERBOSITY=error`` on import unless it is set, which would hide
gRPC's own log lines from a node, among them the refused TLS handshakes (a certificate
from another CA, none at all, an expired one) that docs/security.md says are logged.
Set but empty, Flower leaves it alone and gRPC reads it as unset: the node logs what it
logged before (``info`` would log the same, plus a warning that INFO is no level for
production).
"""

import os

os.environ["FLWR_TELEMETRY_ENABLED"] = "0"
os.environ["FLWR_DISABLE_UPDATE_CHECK"] = "1"
os.environ.setdefault("GRPC_VERBOSITY", "")
