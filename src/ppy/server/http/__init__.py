"""HTTP front end: the ASGI app (``create_app``, mountable anywhere) and ppy's HTTP/1.1 server for it (h1.py)."""

from ppy.server.http.app import create_app, start

__all__ = ["create_app", "start"]
