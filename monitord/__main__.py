"""``python -m monitord``: the same command line as the ``monitord`` script."""

import sys

from monitord.tools.cli import main

sys.exit(main())
