"""Run the ``wirecall`` command as if some optional packages were not installed:
``python -m support.no_extra MOD1,MOD2 serve ...`` (each named module made unimportable)."""

from __future__ import annotations

import sys

if __name__ == "__main__":
    for name in sys.argv[1].split(","):
        sys.modules[name] = None  # type: ignore[assignment]  # import raises ImportError
    from wirecall.cli import main

    sys.exit(main(sys.argv[2:]))
