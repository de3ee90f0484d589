"""Functions that raise, for error-shape tests."""


class PaymentDeclined(Exception):
    pass


def declined(amount: int) -> None:
    raise PaymentDeclined(f"card declined for {amount}")


def empty_message() -> None:
    raise ValueError()
