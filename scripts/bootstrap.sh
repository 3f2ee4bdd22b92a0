#!/usr/bin/env bash
# Create .venv (if needed) and install fedgate with its test tools into it.
# Sourced by scripts/demo.sh and scripts/test.sh; re-installs only when pyproject.toml changes.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${FEDGATE_VENV:-$ROOT/.venv}"

pick_python() {
  for candidate in "${PYTHON:-}" python3.11 python3.12 python3.13 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
      echo "$candidate"; return 0
    fi
  done
  echo "fedgate needs Python 3.11 or newer (set PYTHON=/path/to/python3.11)" >&2
  return 1
}

if [ ! -x "$VENV/bin/python" ]; then
  PY="$(pick_python)"
  echo "==> creating virtualenv $VENV with $PY"
  "$PY" -m venv "$VENV"
fi
STAMP="$VENV/.fedgate-installed"
WANT="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  echo "==> installing fedgate and its dependencies into $VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet -e "$ROOT[test]"
  echo "$WANT" > "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
# Every node, CLI call and benchmark is a new interpreter. Where PYTHONDONTWRITEBYTECODE is
# set (as on this project's CI machines) none of them caches our modules' bytecode, and
# each compiles all of gateway/ and federation/ again (~0.4 s of CPU a process); compiling
# them once here (only what changed, a fraction of a second) spares every start that.
"$VENV/bin/python" -m compileall -q "$ROOT/gateway" "$ROOT/federation" >/dev/null ||
  echo "note: could not precompile gateway/ and federation/ (each process compiles them)" >&2
