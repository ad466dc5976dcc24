"""python -m scaling_model COMMAND [options]: see scaling_model.cli."""

import sys

from scaling_model.cli import main

sys.exit(main())
