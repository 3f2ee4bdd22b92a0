"""The entry point of an approved app's process: its network goes before anything else.

A user namespace (``training.netns``) can only be entered by a process of one thread, and
importing numpy or Flower may start threads; so this module imports nothing heavy, takes
the process out of every IP network, and only then hands over to
``training.app_host.child``. Where the kernel refuses, the process ends at once with
``EXIT_NOT_ISOLATED`` and the owner refuses the message: an app never runs networked.
"""

from __future__ import annotations

import contextlib
import os
import sys

EXIT_NOT_ISOLATED = 3
_PR_SET_PDEATHSIG = 1


def main(argv: list[str]) -> int:
    import ctypes
    import signal

    from gateway.training import netns

    # The app's process dies with the node's thread that started it, whatever the app
    # does to the pipes (an app that held its exit with a thread outlived the node).
    ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)

    try:
        applied = netns.isolate()
    except OSError as exc:
        print(f"fedgate app sandbox: network not isolated, stopping: {exc}", file=sys.stderr)
        return EXIT_NOT_ISOLATED
    print(f"fedgate app sandbox: {applied}", file=sys.stderr)
    from gateway.training.app_host import child

    return child(argv)


if __name__ == "__main__":
    code = 1
    try:
        code = main(sys.argv[1:])
    except BaseException:  # noqa: BLE001 - said in the log; the process ends either way
        import traceback

        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):  # nothing more can be said
                stream.flush()
        os._exit(code)  # now: a thread the app left running does not hold the process
