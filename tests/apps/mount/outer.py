"""An existing Starlette app that mounts ppy's ASGI app under /py (served by a separate uvicorn in tests)."""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from ppy.server.http import create_app


async def own(request: object) -> JSONResponse:
    return JSONResponse({"own": True})


app = Starlette(routes=[
    Route("/own", own),
    Mount("/py", app=create_app(os.environ["WEB_APP_DIR"], allowed_hosts="*")),
])
