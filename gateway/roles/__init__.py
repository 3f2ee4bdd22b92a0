"""The roles a node plays in one request: home, owner (with its relay), vouching, and
their PSI and training counterparts (psi_home/psi_owner, train_home/train_owner).
"""
