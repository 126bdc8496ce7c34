"""``python -m orchestrator.checker``: see :mod:`orchestrator.checker.cli`."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
