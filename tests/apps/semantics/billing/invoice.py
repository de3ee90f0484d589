"""A module inside a folder without __init__.py (a namespace package)."""


def total(amounts: list[float], tax: float = 0.0) -> float:
    """Sum the amounts and add tax."""
    return round(sum(amounts) * (1 + tax), 2)
