"""A package module with state, imported by plain dotted name from user.py."""

_state = {"n": 0}


def bump() -> int:
    _state["n"] += 1
    return _state["n"]
