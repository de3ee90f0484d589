"""A sibling module imported by plain name from other app modules."""


def helper(x):
    return f"helped {x}"
