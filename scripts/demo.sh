#!/usr/bin/env bash
# Quick start 1: set up and run the Yangtze Delta demo federation.
# Extra arguments go to `fedgate demo` (e.g. --keep, --scale 0.2).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
exec fedgate demo "$@"
