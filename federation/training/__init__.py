"""Federated training on Flower: vetted numpy tasks, the owner's ClientApp, the home's loop.

``tasks`` (the models an owner may allow without reviewing code), ``features``
(standardisation, class counts and one-hot encoding computed without raw values leaving),
``config`` (the typed ``ConfigRecord`` every message carries), ``client_app`` (the
ClientApp an owner runs in-process on its granted columns) and ``server`` (Flower's
strategies by name and the round loop that reports each round). Nothing here imports
``gateway``; the node supplies the Grid and the data loader.
"""

import os

# Flower reads these when its modules are first imported (``flwr.app`` pulls in its
# telemetry module): nothing of Flower may call out from a node. Telemetry is only sent
# by Flower's own entry points (SuperLink, SuperNode, simulation, ``flwr`` CLI), which a
# node never runs, but the switches are off anyway in case one is ever reached.
os.environ["FLWR_TELEMETRY_ENABLED"] = "0"
os.environ["FLWR_DISABLE_UPDATE_CHECK"] = "1"
