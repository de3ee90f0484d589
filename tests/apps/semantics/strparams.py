"""Shows the Python types a function receives (for --legacy-str-params)."""


def kinds(*values):
    return [[type(v).__name__, v] for v in values]


def named(a=None, b=None):
    return [[type(a).__name__, a], [type(b).__name__, b]]
