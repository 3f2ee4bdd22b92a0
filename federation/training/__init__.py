"""Federated training on Flower: vetted numpy tasks, the owner's ClientApp, the home's loop.

``tasks`` (the models an owner may allow without reviewing code), ``features``
(standardisation and one-hot encoding computed without raw values leaving),
``config`` (the typed ``ConfigRecord`` every message carries), ``client_app`` (the
ClientApp an owner runs in-process on its granted columns) and ``server`` (Flower's
strategies by name and the round loop that reports each round). Nothing here imports
``gateway``; the node supplies the Grid and the data loader.
"""
