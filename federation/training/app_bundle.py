"""A custom Flower app as an owner's operator reviews and approves it: files and a digest.

An app is a folder of Python (and TOML) files whose ``client_app.py`` defines

- ``app``: a Flower ``ClientApp`` answering ``train`` (and ``evaluate``) messages the way
  the built-in tasks do (``arrays`` and ``metrics`` with ``num-examples``), reading its
  rows with ``app_rows(context)``; and
- ``init(n_features, n_outputs, seed)``: the initial model, a list of numpy arrays, which
  one owner's approved copy computes for the run (``query.init``).

Its digest is SHA-256 over every file in path order (length-prefixed path and bytes), so
an owner approves exactly the code that will run; a task names it as ``app:<digest>``.
Nothing here runs app code: ``load_module`` is for the app's own process
(``gateway.training.app_host``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import numpy as np

from federation.canonical import is_digest
from federation.training.errors import invalid

if TYPE_CHECKING:  # an annotation only: the client and the CLI load no Flower
    from flwr.app import Context

ENTRY = "client_app.py"
SUFFIXES = (".py", ".toml")
MAX_FILES = 64
MAX_BYTES = 2 * 1024 * 1024  # all files together
PREFIX = "app:"
ROWS = "fedgate.rows"  # the ArrayRecord in ``context.state`` holding X and y
_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class AppBundle:
    files: tuple[tuple[str, bytes], ...]  # (relative posix path, content), path order

    @property
    def digest(self) -> str:
        h = hashlib.sha256(b"fedgate-app-v1\x00")
        for path, data in self.files:
            name = path.encode()
            h.update(len(name).to_bytes(4, "big") + name + len(data).to_bytes(8, "big"))
            h.update(data)
        return h.hexdigest()

    @property
    def size(self) -> int:
        return sum(len(d) for _, d in self.files)


def bundle(files: list[tuple[str, bytes]]) -> AppBundle:
    """Files checked (names, kinds, counts, sizes, the entry module) and put in order.
    None at all is refused as any folder without the entry module is: by naming it."""
    if len(files) > MAX_FILES:
        raise invalid(f"an app has at most {MAX_FILES} files")
    seen: set[str] = set()
    for path, _ in files:
        check_path(path)
        if path in seen:
            raise invalid(f"the app names {path!r} twice")
        seen.add(path)
    folders = {str(p) for path in seen for p in PurePosixPath(path).parents}
    if seen & folders:
        raise invalid("an app names a file and a folder alike")
    if ENTRY not in seen:
        raise invalid(f"an app needs {ENTRY} (defining app and init)")
    b = AppBundle(tuple(sorted(files)))
    if b.size > MAX_BYTES:
        raise invalid(f"an app's files hold at most {MAX_BYTES // 1024} KiB")
    return b


def check_path(path: str) -> None:
    parts = PurePosixPath(path).parts
    if not parts or len(parts) > 4 or not all(_PART.fullmatch(p) for p in parts):
        raise invalid(f"not an app file name: {path[:80]!r}")
    if not path.endswith(SUFFIXES):
        raise invalid(f"an app holds only {' and '.join(SUFFIXES)} files, not {path[:80]!r}")


def read_dir(root: Path) -> AppBundle:
    """The app in ``root``: its .py and .toml files (no links, no caches)."""
    if not root.is_dir():
        raise invalid(f"no app folder {str(root)!r}")
    files: list[tuple[str, bytes]] = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if "__pycache__" in rel or p.is_dir() or not rel.endswith(SUFFIXES):
            continue
        if p.is_symlink() or not p.is_file():
            raise invalid(f"{rel!r} is not a plain file")
        files.append((rel, p.read_bytes()))
        if len(files) > MAX_FILES:
            raise invalid(f"an app has at most {MAX_FILES} files")
    return bundle(files)


def task_of(digest: str) -> str:
    return PREFIX + digest


def valid_digest(digest: str) -> bool:
    return is_digest(digest)


def is_app_task(task: str) -> bool:
    return task.startswith(PREFIX) and is_digest(task[len(PREFIX) :])


def digest_of(task: str) -> str:
    if not is_app_task(task):
        raise invalid(f"not an app task: {task[:80]!r}")
    return task[len(PREFIX) :]


def short(digest: str) -> str:
    return digest[:12]


def app_rows(context: Context) -> tuple[np.ndarray, np.ndarray]:
    """The rows an owner gives its app for this run: features X (granted columns, in the
    spec's order) and the label y, as float64."""
    rec = context.state.array_records[ROWS]
    return rec["X"].numpy(), rec["y"].numpy()


MAX_ARRAYS = 64  # in an app's initial model


def load_module(root: Path, name: str) -> object:
    """Import ``root``'s ``client_app.py`` as module ``name`` (its folder importable)."""
    spec = importlib.util.spec_from_file_location(name, root / ENTRY)
    if spec is None or spec.loader is None:
        raise invalid(f"cannot load {ENTRY} from {str(root)!r}")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(root))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(root))
    return module
