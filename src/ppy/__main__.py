"""``python -m ppy`` works like ``ppy``."""

import sys

from ppy.cli import main

sys.exit(main())
