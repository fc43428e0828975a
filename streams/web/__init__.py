"""The API's pages and the files they load, all served by ``cityloop api`` from the package (nothing from a CDN).

* ``/board``: the ops centre's live board (a map and list of open incidents, streams/web/static/board.js; its SLA
  and sensors views, streams/web/static/board-views.js);
* ``/crew``: the crew app, a unit's tasks on a phone, each with a map of its place (streams/web/static/crew.js);
* ``/docs``: the OpenAPI explorer (Swagger UI), working on a closed network;
* ``/web/vendor/...``: the browser libraries of ``streams/web/vendor/`` (see streams/web/vendor.py);
* ``/web/static/...``: CityLoop's own scripts and styles.

Every page is sent with a Content-Security-Policy that allows scripts from this
server only (no inline script, no eval), so a page cannot be made to run what
it did not ship.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

HERE = Path(__file__).resolve().parent

# scripts and everything else from this server only; inline styles allowed (libraries set them), no inline script
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)


def page_headers(tiles_origin: str | None = None) -> dict[str, str]:
    """The pages' headers; a city's tile server (``map_tiles``) is the one other place images may come from."""
    csp = CSP if not tiles_origin else CSP.replace("img-src 'self' data:;", f"img-src 'self' data: {tiles_origin};")
    return {
        "Content-Security-Policy": csp,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
    }


PAGE_HEADERS = page_headers()

DOCS_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}: OpenAPI</title>
<link rel="icon" href="/web/vendor/swagger-ui/favicon-32x32.png">
<link rel="stylesheet" href="/web/vendor/swagger-ui/swagger-ui.css">
</head>
<body>
<div id="swagger-ui" data-openapi="{openapi}"></div>
<script src="/web/vendor/swagger-ui/swagger-ui-bundle.js"></script>
<script src="/web/static/docs.js"></script>
</body>
</html>
"""


def page(name: str) -> str:
    """An HTML page of ``streams/web/pages/`` (served with :data:`PAGE_HEADERS`, never as a static file)."""
    return (HERE / "pages" / f"{name}.html").read_text(encoding="utf-8")


def mount(app: FastAPI, tiles_origin: str | None = None) -> None:
    """Add the pages and their files to the API app (created with ``docs_url=None, redoc_url=None``)."""
    map_headers = page_headers(tiles_origin)  # the pages with a map: the board, the crew app
    app.mount("/web/vendor", StaticFiles(directory=HERE / "vendor"), name="web-vendor")
    app.mount("/web/static", StaticFiles(directory=HERE / "static"), name="web-static")

    @app.get("/board", include_in_schema=False)
    async def board() -> HTMLResponse:
        """The ops centre's board (streams/web/static/board.js); its data needs the ops centre's token."""
        return HTMLResponse(page("board"), headers=map_headers)

    @app.get("/crew", include_in_schema=False)
    async def crew() -> HTMLResponse:
        """The crew app (streams/web/static/crew.js): a unit's tasks and their maps; its data needs the unit's token."""
        return HTMLResponse(page("crew"), headers=map_headers)

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        page = DOCS_PAGE.format(title=app.title, openapi=app.openapi_url or "/openapi.json")
        return HTMLResponse(page, headers=PAGE_HEADERS)

    @app.middleware("http")
    async def static_headers(request: Request, call_next: Any) -> Any:
        response = await call_next(request)
        if request.url.path.startswith("/web/"):
            response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response
