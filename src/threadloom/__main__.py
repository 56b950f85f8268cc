"""``python -m threadloom``: the ``threadloom`` command."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
