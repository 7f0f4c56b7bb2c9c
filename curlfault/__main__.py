"""``python -m curlfault``: the same command as the ``curlfault`` console script."""

import sys

from ._cli import main

sys.exit(main())
