"""A bare uvicorn + Starlette JSON-RPC endpoint: the yardstick for ppy's HTTP ``POST /rpc``.

One route, stdlib-json request parsing via ``request.json()`` and a
``JSONResponse``, served by uvicorn with its fastest stack (uvloop,
httptools), one worker, access log off.

Usage: python starlette_app.py PORT
"""

from __future__ import annotations

import sys

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


def hello() -> str:
    return "hello, world."


async def ahello() -> str:
    return "hello, world."


async def rpc(request: Request) -> JSONResponse:
    req = await request.json()
    method = req.get("method")
    if method == "h.hello":
        result = hello()
    elif method == "h.ahello":
        result = await ahello()
    else:
        return JSONResponse({"jsonrpc": "2.0", "id": req.get("id"),
                             "error": {"code": -32601, "message": "method not found"}})
    return JSONResponse({"jsonrpc": "2.0", "id": req.get("id"), "result": result})


app = Starlette(routes=[Route("/rpc", rpc, methods=["POST"])])

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), loop="uvloop", http="httptools",
                access_log=False, log_level="warning", backlog=4096)
