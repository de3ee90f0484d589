"""Imports ``json`` and must get the standard library's, despite the app's json.py."""

import json


def encode(value) -> str:
    return json.dumps(value, sort_keys=True)


def which() -> str:
    return json.__file__ or ""
