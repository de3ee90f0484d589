"""Dies while being imported when ISO_DIE_AT_IMPORT is set: a worker that can never start.

The --workers supervisor imports no app code, so only its children die; the
test checks that it backs off instead of forking in a loop.
"""

from __future__ import annotations

import os

if os.environ.get("ISO_DIE_AT_IMPORT"):
    os._exit(7)


def ok() -> bool:
    return True
