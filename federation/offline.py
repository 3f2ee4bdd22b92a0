"""Flower's phone-home switches, off before any Flower module is imported.

Flower reads them when its modules are first imported (``flwr.app`` pulls in its
telemetry module), and a module's own imports put ``flwr`` before ours; so both packages'
``__init__`` import this module, which every import of a fedgate module runs first.
Telemetry and the update check are only reached from Flower's own entry points
(SuperLink, SuperNode, simulation, the ``flwr`` CLI), which a node never runs: the
switches are off anyway, in case one ever is. A node also points ``FLWR_HOME`` inside
its own state (``gateway.node``).
"""

import os

os.environ["FLWR_TELEMETRY_ENABLED"] = "0"
os.environ["FLWR_DISABLE_UPDATE_CHECK"] = "1"
