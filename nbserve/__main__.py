"""``python -m nbserve``: the same as the ``nbserve`` command."""

import sys

from nbserve.cli import main

sys.exit(main())
