"""Exposure rules (docs/app-folder.md): only public functions *defined* here are callable."""

import json  # a module: never callable
from os import system  # an imported name: never callable (it would run shell commands!)
from os.path import join as joined  # noqa: F401 - imported, never callable

from helpers import helper  # a function of a sibling module: never callable as expose.helper

assert system and json and helper

CONSTANT = 42
shout = str.upper  # a builtin bound to a public name: not a function defined here


def public(x=1):
    """A plain public function."""
    return ["public", x]


async def apublic(x=1):
    """An async public function."""
    return ["apublic", x]


def _private():
    return "private"


def __dunder__():
    return "dunder"


class Widget:
    def __init__(self):
        self.made = True

    def method(self):
        return "method"


def uses_helper(x):
    """Sibling imports by plain name work."""
    return helper(x)
