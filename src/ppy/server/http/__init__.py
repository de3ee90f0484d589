"""HTTP front end: the ASGI app (``create_app``, mountable anywhere) and its uvicorn adapter."""

from ppy.server.http.app import create_app, start

__all__ = ["create_app", "start"]
