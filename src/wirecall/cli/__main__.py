"""``python -m wirecall.cli``: the ``wirecall`` command."""

from . import main

if __name__ == "__main__":
    raise SystemExit(main())
