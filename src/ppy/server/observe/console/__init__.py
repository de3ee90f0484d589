"""The web console page: ``index.html`` with ``app.css`` and ``app.js`` inlined, built once.

One self-contained response means the page works even when it is served
with 401 (token mode, before the person typed the token): there are no other
assets to fetch, and nothing is loaded from the internet.  The inline script
and style are pinned by their SHA-256 in a strict Content-Security-Policy, so
no other script can run in the page.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode() + "'"


class Page:
    def __init__(self) -> None:
        css = (HERE / "app.css").read_text(encoding="utf-8")
        js = (HERE / "app.js").read_text(encoding="utf-8")
        html = (HERE / "index.html").read_text(encoding="utf-8")
        html = html.replace("<!--CSS-->", f"<style>{css}</style>", 1).replace("<!--JS-->", f"<script>{js}</script>", 1)
        self.html = html.encode("utf-8")
        self.csp = ("default-src 'none'; "
                    f"script-src {_sha256(js)}; style-src {_sha256(css)}; "
                    "connect-src 'self'; img-src 'self' data:; base-uri 'self'; form-action 'none'; "
                    "frame-ancestors 'none'")

    def headers(self, status: int) -> tuple[tuple[bytes, bytes], ...]:
        headers: list[tuple[bytes, bytes]] = [
            (b"content-security-policy", self.csp.encode()),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
            (b"cache-control", b"no-store"),
        ]
        if status == 401:
            headers.append((b"www-authenticate", b'Bearer realm="ppy"'))
        return tuple(headers)
