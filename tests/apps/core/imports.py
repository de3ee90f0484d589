"""Names merely imported into a module, a class and a lambda: none may be callable."""

import os
import os.path
from os import system
from os.path import join as joined
from subprocess import check_output

from calls import echo as borrowed  # a sibling's function is not this module's

__all_note__ = (os, system, joined, check_output, borrowed)


class Thing:
    def method(self) -> str:
        return "method"


def own() -> str:
    """The one real function of this module."""
    return "own"


def __init__() -> str:  # a dunder-named function is private too
    return "dunder"
