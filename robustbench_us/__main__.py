"""``python -m robustbench_us``."""

import sys

from robustbench_us.cli import main

sys.exit(main())
