"""Module state reached two ways: as the entry ``counter`` and by ``import counter`` from user.py."""

_state = {"n": 0}


def bump() -> int:
    _state["n"] += 1
    return _state["n"]
