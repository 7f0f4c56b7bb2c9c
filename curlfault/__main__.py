"""``python -m curlfault``: the same command as the ``curlfault`` console script."""

import sys

from ._cli import main

if __name__ == "__main__":
    sys.exit(main())
