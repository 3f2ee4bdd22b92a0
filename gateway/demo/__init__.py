"""The sample federation on one machine: provisioning, data, node processes, `fedgate demo`."""
