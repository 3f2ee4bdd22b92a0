"""The roles a node plays in one request: home, owner (with its relay), vouching."""
