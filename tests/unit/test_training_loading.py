"""Training's imports (``gateway.training.loading``): the owner's and the home's, from two
threads at once, both finish. Each try is a fresh interpreter, where neither is loaded."""

from __future__ import annotations

import subprocess
import sys

CODE = """
import threading
from gateway.training.loading import load
done = []
threads = [
    threading.Thread(target=lambda m=m: done.append(load(m).__name__))
    for m in ("gateway.roles.train_owner", "gateway.training.worker")
]
for t in threads:
    t.start()
for t in threads:
    t.join(60)
assert sorted(done) == ["gateway.roles.train_owner", "gateway.training.worker"], done
print("both")
"""


def test_the_owner_and_the_worker_import_at_once_without_deadlock() -> None:
    for _ in range(3):
        result = subprocess.run(
            [sys.executable, "-c", CODE], capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0 and "both" in result.stdout, result.stderr
