"""Federated training on Flower, carried over the gateway's own transport (docs/training.md)."""
