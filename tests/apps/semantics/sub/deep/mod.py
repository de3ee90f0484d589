def where() -> str:
    return __name__
