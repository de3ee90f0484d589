"""The web console in real headless Chromium (Debian's ``chromium`` + ``chromium-driver``, via Selenium).

Open ``/``, see the demo functions, fill forms and read results from the page, make traffic and see
the live numbers move, check a phone-width layout, and the token prompt.  (docs/console.png comes from
scripts/console_screenshots.py, which makes a minute of traffic first.)
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import ppy
from conftest import DEMO_APP, Server, require_tool

pytestmark = pytest.mark.timeout(120)
WAIT = 15.0  # seconds any page update may take (it polls every 2 s)

try:
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webelement import WebElement
except ImportError:  # pragma: no cover - selenium is a dev dependency
    webdriver = None  # type: ignore[assignment]


def _wait(what: str, check: Callable[[], Any], timeout: float = WAIT, explain: Callable[[], str] = str) -> Any:
    """Poll ``check`` (bounded) until it returns something truthy; ``explain`` adds page state to a failure."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
        except WebDriverException as exc:  # element replaced while we looked: look again
            last = exc
            value = None
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}" + (f" (last error: {last})" if last else "") + explain())


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium = require_tool("chromium")
    chromedriver = require_tool("chromedriver")
    if webdriver is None:
        pytest.fail("selenium is not installed: pip install -e '.[dev]'")
    profile = tempfile.mkdtemp(prefix="ppy-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                 f"--user-data-dir={profile}", "--window-size=1280,1000", "--hide-scrollbars"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def demo() -> Iterator[Server]:
    server = Server(DEMO_APP, "--no-access-log", http=True)
    yield server
    server.stop()


def card(driver: Any, method: str) -> WebElement:
    return _wait(f"the card of {method}",
                 lambda: driver.find_element(By.CSS_SELECTOR, f'article.fn[data-method="{method}"]'))


def call_from_form(driver: Any, method: str, values: dict[str, str]) -> tuple[str, str, str]:
    """Fill the form of ``method``, click Call, return (outcome class, meta line, result text)."""
    box = card(driver, method)
    for name, value in values.items():
        field = box.find_element(By.CSS_SELECTOR, f'[data-param="{name}"]')
        field.clear()
        field.send_keys(value)
    out = box.find_element(By.CSS_SELECTOR, ".out")
    before = out.find_element(By.CSS_SELECTOR, ".meta").get_attribute("data-done")
    box.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    _wait(f"a result for {method}",
          lambda: out.find_element(By.CSS_SELECTOR, ".meta").get_attribute("data-done") not in (None, before),
          explain=lambda: f"; before={before!r}, output: {out.get_attribute('outerHTML')}")
    kind = "ok" if "ok" in (out.get_attribute("class") or "").split() else "err"
    return kind, out.find_element(By.CSS_SELECTOR, ".meta").text, out.find_element(By.CSS_SELECTOR, "pre").text


def open_console(driver: Any, server: Server) -> None:
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    driver.get(server.http_url + "/")
    card(driver, "h.hello")


def test_console_lists_every_demo_function_with_signature_and_docstring(browser: Any, demo: Server) -> None:
    open_console(browser, demo)
    doc = httpx.get(demo.http_url + "/openrpc.json").json()
    listed = [e.get_attribute("data-method") for e in browser.find_elements(By.CSS_SELECTOR, "article.fn")]
    assert sorted(listed) == sorted(m["name"] for m in doc["methods"])
    assert {"h.hello", "h.greet", "h.add", "billing.invoice.total"} <= set(listed)
    greet = card(browser, "h.greet")
    assert greet.find_element(By.CSS_SELECTOR, ".sig").text == "greet(name: str = 'world', times: int = 1) -> str"
    assert "Greet someone" in greet.find_element(By.CSS_SELECTOR, ".doc").text
    # typed inputs from the annotations
    assert greet.find_element(By.CSS_SELECTOR, '[data-param="times"]').get_attribute("type") == "number"
    assert greet.find_element(By.CSS_SELECTOR, '[data-param="name"]').get_attribute("type") == "text"
    total = card(browser, "billing.invoice.total")
    assert total.find_element(By.CSS_SELECTOR, '[data-param="lines"]').tag_name == "textarea"


def test_console_calls_functions_and_shows_results_and_errors(browser: Any, demo: Server) -> None:
    open_console(browser, demo)
    kind, meta, text = call_from_form(browser, "h.hello", {})
    assert (kind, text) == ("ok", '"hello, world."')
    assert "HTTP 200" in meta and " ms" in meta

    kind, _, text = call_from_form(browser, "h.greet", {"name": "bob", "times": "2"})
    assert (kind, text) == ("ok", '"hello, bob. hello, bob."')

    kind, _, text = call_from_form(browser, "h.add", {"a": "1.5", "b": "2"})
    assert (kind, text) == ("ok", "3.5")

    kind, _, text = call_from_form(browser, "billing.invoice.total",
                                   {"lines": '[{"item": "tea", "qty": 2, "price": "1.25"}]', "vat_percent": "10"})
    assert kind == "ok"
    assert '"total": "2.75"' in text

    kind, meta, text = call_from_form(browser, "h.add", {"a": "", "b": "2"})  # a is required
    assert kind == "err"
    assert "HTTP 400" in meta and "-32602" in meta
    assert "'a'" in text or "a" in text

    kind, meta, _ = call_from_form(browser, "billing.invoice.total", {"lines": "[not json"})
    assert kind == "err" and "not sent" in meta


def _number(driver: Any, element_id: str) -> float:
    text = driver.find_element(By.ID, element_id).text.replace(",", "").replace("%", "").strip()
    return float(text) if text not in ("", "\u2013") else 0.0  # an en dash: no data yet


def test_live_numbers_and_charts_follow_traffic(browser: Any, demo: Server) -> None:
    open_console(browser, demo)
    _wait("the first stats refresh", lambda: browser.find_element(By.ID, "total-calls").text != "")
    before = _number(browser, "total-calls")
    with ppy.Client(demo.url) as client:
        for _ in range(300):
            client.call("h.hello")
        for _ in range(20):
            try:
                client.call("h.add", a="x", b=1)
            except ppy.RemoteError:
                pass
    _wait("total calls to grow by the traffic", lambda: _number(browser, "total-calls") >= before + 320)
    row = _wait("the h.hello row", lambda: browser.find_element(By.CSS_SELECTOR, '.row[data-method="h.hello"]'))
    assert int(row.get_attribute("data-calls") or 0) >= 300
    assert _number(browser, "total-rate") > 0
    assert _number(browser, "total-errors") > 0
    assert browser.find_element(By.ID, "total-p50").text.endswith("ms")
    # the rate chart drew a line (a path with points), not an empty svg
    line = browser.find_element(By.CSS_SELECTOR, "#chart-rate path.spark-line")
    assert (line.get_attribute("d") or "").count("L") >= 50  # one point per 5 s over 5 minutes
    errors = _wait("the h.add row", lambda: browser.find_element(
        By.CSS_SELECTOR, '.row[data-method="h.add"] [data-metric="errors"] .num')).text
    assert errors.endswith("%") and float(errors.rstrip(" %")) > 0
    path = Path(tempfile.gettempdir()) / "ppy-console.png"
    assert browser.save_screenshot(str(path)) and path.stat().st_size > 10_000


def test_phone_width_has_no_horizontal_scroll(browser: Any, demo: Server) -> None:
    browser.get(demo.http_url + "/")
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                            {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True})
    try:
        browser.get(demo.http_url + "/")
        card(browser, "billing.invoice.total")
        _wait("the stats to render", lambda: browser.find_element(By.ID, "total-calls").text != "")
        width = browser.execute_script("return window.innerWidth")
        assert width <= 400
        assert browser.execute_script("return document.documentElement.scrollWidth") <= width
        kind, _, text = call_from_form(browser, "h.greet", {"name": "phone"})
        assert (kind, text) == ("ok", '"hello, phone."')
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_token_is_asked_once_and_kept_for_the_session(browser: Any, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("console-token-42\n")
    with Server(DEMO_APP, "--token-file", str(token_file), http=True) as server:
        browser.get(server.http_url + "/")
        panel = _wait("the token prompt", lambda: browser.find_element(By.ID, "token-panel"))
        _wait("the token prompt to show", panel.is_displayed)
        assert not browser.find_element(By.ID, "main").is_displayed()
        assert not browser.find_elements(By.CSS_SELECTOR, "article.fn")

        field = browser.find_element(By.ID, "token-input")
        field.send_keys("wrong-token")
        browser.find_element(By.CSS_SELECTOR, "#token-form button").click()
        error = browser.find_element(By.ID, "token-error")
        _wait("the wrong-token message", lambda: error.is_displayed() and "not accepted" in error.text)

        field.send_keys("console-token-42")
        browser.find_element(By.CSS_SELECTOR, "#token-form button").click()
        card(browser, "h.hello")
        assert not browser.find_element(By.ID, "token-panel").is_displayed()
        assert browser.execute_script("return sessionStorage.getItem('ppy.token')") == "console-token-42"
        kind, _, text = call_from_form(browser, "h.hello", {})
        assert (kind, text) == ("ok", '"hello, world."')

        browser.refresh()  # same tab session: not asked again
        card(browser, "h.hello")
        assert not browser.find_element(By.ID, "token-panel").is_displayed()
        browser.execute_script("sessionStorage.clear()")


def test_entries_that_failed_to_load_are_not_listed(browser: Any, tmp_path: Path) -> None:
    app = tmp_path / "app"
    app.mkdir()
    (app / "good.py").write_text("def ok(n: int) -> int:\n    return n\n")
    (app / "bad.py").write_text("import not_a_module_anywhere\n")
    (tmp_path / "elsewhere.py").write_text("def leak() -> str:\n    return 'leaked'\n")
    (app / "outside.py").symlink_to(tmp_path / "elsewhere.py")
    with Server(app, "--no-access-log", http=True) as server:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        browser.get(server.http_url + "/")
        card(browser, "good.ok")
        page = browser.find_element(By.TAG_NAME, "body").text
        assert "bad" not in page and "outside" not in page and "leak" not in page and "not_a_module" not in page
        assert browser.find_element(By.ID, "fn-count").text == "1 functions"
        link = browser.find_element(By.ID, "openapi-link")  # the OpenAPI document, next to openrpc.json
        assert link.is_displayed() and link.get_attribute("href") == server.http_url + "/openapi.json"


def test_console_shows_a_generators_items_as_they_arrive(browser: Any, demo: Server) -> None:
    """h.words streams (docs/streaming.md): the card shows each word while the stream still runs."""
    open_console(browser, demo)
    box = card(browser, "h.words")
    assert box.find_element(By.CSS_SELECTOR, "button[type=submit]").text == "Stream"
    call_from_form(browser, "h.words", {"text": "one two three", "delay_ms": "400"})
    out = box.find_element(By.CSS_SELECTOR, ".out")
    _wait("the first word before the stream ends",
          lambda: out.find_element(By.CSS_SELECTOR, "pre").text == '"one"'
          and "streaming" in out.find_element(By.CSS_SELECTOR, ".meta").text)
    _wait("the end of the stream", lambda: "stream ended" in out.find_element(By.CSS_SELECTOR, ".meta").text)
    assert out.find_element(By.CSS_SELECTOR, "pre").text == '"one"\n"two"\n"three"'
    assert "3 items" in out.find_element(By.CSS_SELECTOR, ".meta").text
