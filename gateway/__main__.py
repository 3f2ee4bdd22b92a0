"""``python -m gateway`` is the ``fedgate`` command."""

from gateway.cli import main

if __name__ == "__main__":  # a training run's worker process imports this module again
    raise SystemExit(main())
