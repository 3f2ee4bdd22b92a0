"""``python -m gateway`` is the ``fedgate`` command."""

from gateway.cli import main

raise SystemExit(main())
