"""``python -m tollgate``: the same as the ``tollgate`` command (see :mod:`tollgate.cli`)."""

from tollgate.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
