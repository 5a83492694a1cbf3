"""``python -m monitord.tools.cli`` still works now that the CLI is a package (as ``python -m monitord``)."""

import sys

from monitord.tools.cli import main

sys.exit(main())
