"""python -m burst [options]: see burst.cli."""

import sys

from burst.cli import main

sys.exit(main())
