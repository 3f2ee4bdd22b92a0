"""Private set intersection: ECDH over ristretto255, and the checks on what a peer sends.

Pure protocol math: no gateway import, no protobuf, no network. ``group`` hashes items to
points and blinds them; ``stream`` checks a peer's batches and compares sets.
"""
