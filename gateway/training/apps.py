"""The custom apps this node's operators approved: their files, by digest, on disk.

``fedgate app approve DIR`` uploads an app's files; the node stores them under
``<data_dir>/apps/<digest>/`` with who approved them and when (``approval.json``),
written to a temporary folder and renamed into place, so an app is either approved
whole or not at all. Only code stored here runs at this node, and only in a process of
its own (``training.app_host``); a run names the app by digest and no code travels.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from federation.training.app_bundle import AppBundle, short, valid_digest
from gateway.errors import NotFound, ResourceExhausted

MAX_APPS = 100
APPROVAL = "approval.json"
FILES = "files"


@dataclass(frozen=True)
class ApprovedApp:
    digest: str
    name: str
    approved_by: str
    approved_at: str
    files: int
    size: int


class AppStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()
        root.mkdir(parents=True, exist_ok=True)
        for stale in root.glob(".tmp-*"):  # an approval or revocation cut short
            shutil.rmtree(stale, ignore_errors=True)

    def approve(
        self,
        bundle: AppBundle,
        name: str,
        by: str,
        when: str,
        record: Callable[[ApprovedApp], None],
    ) -> ApprovedApp:
        """Store the app; ``record`` (its audit entry) runs once the files are written
        and before they count as approved. Approving the same files again is a no-op."""
        digest = bundle.digest
        with self._lock:
            found = self.get(digest)
            if found is not None:
                return found
            if len(self.list()) >= MAX_APPS:
                raise ResourceExhausted(
                    f"this node keeps at most {MAX_APPS} apps: revoke one first"
                )
            app = ApprovedApp(
                digest, name or short(digest), by, when, len(bundle.files), bundle.size
            )
            tmp = self.root / f".tmp-{uuid.uuid4().hex}"
            try:
                for rel, data in bundle.files:
                    path = tmp / FILES / rel
                    path.parent.mkdir(parents=True, exist_ok=True)
                    _write(path, data)
                _write(tmp / APPROVAL, json.dumps(asdict(app), sort_keys=True).encode())
                record(app)
                os.replace(tmp, self.root / digest)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            _sync(self.root)
            return app

    def folder(self, digest: str) -> Path | None:
        """The approved app's files, or None: the one thing a run may execute."""
        return self.root / digest / FILES if self.get(digest) is not None else None

    def get(self, digest: str) -> ApprovedApp | None:
        if not valid_digest(digest):
            return None
        path = self.root / digest / APPROVAL
        try:
            return ApprovedApp(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):  # missing or damaged: not approved
            return None

    def list(self) -> list[ApprovedApp]:
        found = (self.get(p.name) for p in sorted(self.root.iterdir()) if p.is_dir())
        return [a for a in found if a is not None]

    def revoke(self, digest: str, record: Callable[[ApprovedApp], None]) -> ApprovedApp:
        """Withdraw an approval at once; ``record`` (its audit entry) runs first."""
        with self._lock:
            app = self.get(digest)
            if app is None:
                raise NotFound(f"no approved app {short(digest)!r} at this node")
            record(app)
            gone = self.root / f".tmp-{uuid.uuid4().hex}"
            os.replace(self.root / digest, gone)  # no longer approved, at once
            shutil.rmtree(gone, ignore_errors=True)
            _sync(self.root)
            return app


def _write(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _sync(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
