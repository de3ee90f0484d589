"""A regular package: its __init__ is the entry ``shop``."""


def name() -> str:
    return "shop"
