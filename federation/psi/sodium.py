"""libsodium, through the ``rbcl`` binding, for this process.

rbcl writes the libsodium it bundles (2.8 MB) to a new temporary file when it is
imported, loads it from there and never deletes it: every process that ran a PSI (each
node, each test) left one behind, and a temporary folder filled by the gigabyte. A loaded
library stays mapped after its file is removed, so the file goes as soon as rbcl is in.
Import rbcl through this module only."""

from __future__ import annotations

import contextlib
import os
import sys

import rbcl

__all__ = ["rbcl"]


def _remove_loaded_copy() -> None:
    loader = sys.modules.get("rbcl._sodium")
    path = getattr(loader, "lib_path", None)
    if isinstance(path, str):
        with contextlib.suppress(OSError):  # already gone: nothing to clean
            os.unlink(path)


_remove_loaded_copy()
