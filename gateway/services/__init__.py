"""Thin gRPC servicers: each method converts with ``gateway.serde`` and calls a role."""
