"""docs/app-folder.md: an app module is imported once, so ``import counter`` in one app module and the entry
``counter`` are the same module, with the same state (docs/app-folder.md)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import ppy
from conftest import APPS, Server

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module", params=["threads", "isolate"])
def client(request: pytest.FixtureRequest) -> Iterator[ppy.Client]:
    args = ("--isolate", "--pool-size", "1") if request.param == "isolate" else ()
    srv = Server(APPS / "siblings", *args)
    with ppy.Client(srv.url, timeout=20) as c:
        yield c
    assert srv.stop() == 0, srv.output()


def test_an_entry_and_a_plain_sibling_import_share_one_module(client: ppy.Client) -> None:
    assert client.call("counter.bump") == 1
    assert client.call("user.bump_counter") == 2
    assert client.call("counter.bump") == 3


def test_so_do_package_modules_imported_by_dotted_name(client: ppy.Client) -> None:
    assert client.call("pkg.inner.bump") == 1
    assert client.call("user.bump_inner") == 2
    assert client.call("pkg.inner.bump") == 3


def test_an_app_module_named_like_the_stdlib_does_not_replace_it(client: ppy.Client) -> None:
    assert client.call("user.json_is_stdlib") is True
    assert client.call("json.mine") == "app json"
