"""Imports its siblings by plain name, as a script next to them would."""

import json

import counter
import pkg.inner


def bump_counter() -> int:
    return counter.bump()


def bump_inner() -> int:
    return pkg.inner.bump()


def json_is_stdlib() -> bool:
    return json.dumps([1]) == "[1]" and not hasattr(json, "mine")
