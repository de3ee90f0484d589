def hello():
    return 'hello, world.'


def echo(*args):
    return list(args)


def boom():
    raise ValueError("boom")
