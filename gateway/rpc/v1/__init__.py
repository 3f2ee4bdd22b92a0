"""Generated from protos/fedgate/v1 by scripts/gen_protos.py."""
