"""Regenerate docs/console.png and docs/console-phone.png: the demo app under a minute of varied traffic.

Usage: .venv/bin/python scripts/console_screenshots.py [SECONDS]   (default 60; needs chromium + chromedriver)

Starts ``ppy serve`` (demo app) on free loopback ports, drives calls over TCP whose rate rises and falls,
with some errors and slow calls, then has headless Chromium (Selenium) photograph the console.
"""

from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

import ppy

ROOT = Path(__file__).resolve().parent.parent
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--hide-scrollbars")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def traffic(url: str, seconds: float, stop: threading.Event) -> None:
    """Calls whose rate follows a slow wave (20..220 calls/s), with ~3 % errors and a few slow calls."""
    with ppy.Client(url) as client:
        start = time.monotonic()
        n = 0
        while not stop.is_set() and (elapsed := time.monotonic() - start) < seconds:
            rate = 120 + 100 * math.sin(elapsed / 9)
            n += 1
            if n % 33 == 0:
                try:
                    client.call("h.add", a="x", b=1)
                except ppy.RemoteError:
                    pass
            elif n % 50 == 0:
                client.call("h.asleep", ms=15)
            elif n % 10 == 0:
                client.call("h.greet", name="ppy", times=2)
            else:
                client.call("h.hello")
            time.sleep(1 / rate)


def main() -> int:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 60.0
    port, http_port = free_port(), free_port()
    server = subprocess.Popen([sys.executable, "-m", "ppy", "serve", str(ROOT / "src/ppy/demo_app"), "--port",
                               str(port), "--http-port", str(http_port), "--no-access-log"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    profile = tempfile.mkdtemp(prefix="ppy-shot-")
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in (*FLAGS, f"--user-data-dir={profile}", "--window-size=1280,1100"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path="/usr/bin/chromedriver"))
    stop = threading.Event()
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", http_port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        load = threading.Thread(target=traffic, args=(f"tcp://127.0.0.1:{port}", seconds, stop))
        load.start()
        load.join()
        url = f"http://127.0.0.1:{http_port}/"
        driver.get(url)
        greet = driver.find_element(By.CSS_SELECTOR, 'article.fn[data-method="h.greet"]')
        greet.find_element(By.CSS_SELECTOR, '[data-param="name"]').send_keys("PHP")
        greet.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        time.sleep(2.5)  # one stats refresh
        driver.execute_script("window.scrollTo(0, 0)")
        driver.save_screenshot(str(ROOT / "docs" / "console.png"))
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                               {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True})
        driver.get(url)
        time.sleep(2.5)
        driver.save_screenshot(str(ROOT / "docs" / "console-phone.png"))
    finally:
        stop.set()
        driver.quit()
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    print("wrote docs/console.png and docs/console-phone.png", file=sys.stderr)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
