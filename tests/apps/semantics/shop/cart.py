"""``shop.cart``: uses a relative import of its package."""

from . import name


def label(n: int) -> str:
    return f"{name()}:{n}"
