"""One table of error codes (ppy.errors.CODES): the server's exceptions, the Python client's classes,
the metrics' outcome labels and the PHP client's class map all agree with it."""

from __future__ import annotations

import re

import pytest

from conftest import ROOT
from ppy.client import errors as client_errors
from ppy.errors import CODE_BY_NUMBER, CODES, ERROR_BY_CODE
from ppy.server.observe.metrics import OUTCOMES

pytestmark = pytest.mark.fast


def test_server_exceptions_follow_the_table() -> None:
    assert set(ERROR_BY_CODE) == set(CODE_BY_NUMBER)
    for row in CODES:
        assert ERROR_BY_CODE[row.code].http_status == row.http_status


def test_python_client_classes_follow_the_table() -> None:
    for row in CODES:
        err = client_errors.from_error_object({"code": row.code, "message": "m"})
        assert err.code == row.code and type(err) is not client_errors.RemoteError, row


def test_metrics_outcomes_follow_the_table() -> None:
    assert {0: "ok", **{row.code: row.outcome for row in CODES}} == OUTCOMES


def test_php_client_class_map_follows_the_table() -> None:
    source = (ROOT / "clients" / "php" / "src" / "RemoteException.php").read_text()
    block = source[source.index("CLASSES = ["):source.index("];", source.index("CLASSES = ["))]
    php = {int(code): name for code, name in re.findall(r"(-\d+)\s*=>\s*(\w+)::class", block)}
    assert set(php) == set(CODE_BY_NUMBER), "RemoteException::CLASSES must map every code of ppy.errors.CODES"
