#!/usr/bin/env bash
# Quick start 2: set up and run the whole test suite (lint, format, types, generated code, tests).
# Extra arguments go to pytest. CI runs this through .ci/run.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
echo "==> ruff check"
ruff check gateway federation scripts tests
echo "==> ruff format --check"
ruff format --check gateway federation scripts tests
echo "==> mypy (gateway, federation)"
mypy
echo "==> pytest"
exec python -m pytest -q "$@"
