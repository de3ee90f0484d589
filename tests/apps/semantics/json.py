"""An app module named like the stdlib's json: it must not shadow it for anyone else."""


def dumps(obj):
    return "app json, not stdlib"


def mine() -> str:
    return "app json module"
