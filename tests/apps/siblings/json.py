"""Named like the standard library's json: it must not replace it for ``import json`` in user.py."""


def mine() -> str:
    return "app json"
