"""The HTTP app: one FastAPI application serving any task's :class:`Predictor`.

Endpoints (every model; ``{name}`` is the name it is served under)::

    GET  /healthz, /readyz                      liveness, readiness
    GET  /v1/models                             name, task, widget, config summary, scores
    POST /v1/models/{name}/predict              {"inputs": [...]} -> {"outputs": [...]}
    POST /v1/models/{name}/sessions             open a stream -> {"session_id": ...}
    POST /v1/models/{name}/sessions/{id}/step   {"input": chunk} -> the output for it
    DELETE /v1/models/{name}/sessions/{id}      close it
    POST /v1/models/{name}/generate             text generation, server-sent events
    POST /v1/models/{name}/gates                a text's per-token gate activations
    POST /v1/models/{name}/attention            a translation and its attention map
    POST /v1/models/{name}/transcribe           WAV bytes -> transcript
    GET  /                                      the web page (lstmkit/serve/static)
    GET  /docs                                  Swagger UI, from files shipped in the package

``predict`` is generic: the body's ``inputs`` go to the Predictor (micro-batched with other
requests', :mod:`lstmkit.serve.batching`) and its outputs come back as they are, so a new
task is served without a change here. The other endpoints are offered for the models whose
Predictor has what they call: ``open_stream`` (sessions), ``generate_tokens``,
``gate_inputs``, ``attention``, ``transcribe_audio``. Every refused request gets a 4xx JSON body
``{"error": {"status", "field", "message"}}`` naming the field at fault; a request still
waiting after ``limits.timeout_s`` gets 504.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from lstmkit.serve.config import Limits, ServeConfig
from lstmkit.serve.inputs import RequestError
from lstmkit.serve.models import ServedModel
from lstmkit.serve.routes import Service, extra_routes, model_routes, session_routes
from lstmkit.serve.sessions import SessionStore
from lstmkit.version import __version__

STATIC = Path(__file__).resolve().parent / "static"


def _error(status: int, field: str, message: str) -> JSONResponse:
    return JSONResponse(RequestError(status, field, message).body(), status_code=status)


def _validation_field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc]
    out = ""
    for p in parts:
        out += f"[{p}]" if p.isdigit() else (f".{p}" if out else p)
    # a deeply nested body gives a path of hundreds of parts: keep its head
    return (out if len(out) <= 80 else out[:77] + "...") or "body"


class BodyLimit:
    """ASGI middleware: a body over ``limit`` bytes is refused with 413 before the app
    reads it (by its Content-Length, or by counting a chunked body).

    The rest of a refused body is read and discarded (never kept) before the 413 is sent,
    up to ``drain`` bytes: a client that writes its whole body before reading the answer
    (``Connection: close``, as Python's urllib sends) would otherwise have the connection
    reset under it. A body longer still gets the 413 and ``Connection: close``. A client
    waiting for ``100 Continue`` gets the 413 at once (it has not sent the body)."""

    def __init__(self, app: Any, limit: int, drain: int = 64 << 20) -> None:
        self.app, self.limit, self.drain = app, limit, drain

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            waiting = headers.get(b"expect", b"").lower() == b"100-continue"
            return await self.refuse(scope, receive, send, 0, more=True, drain=not waiting)
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            more = message.get("more_body", False)
            if size > self.limit:
                return await self.refuse(scope, receive, send, size, more)
            chunks.append(chunk)
        body, sent = b"".join(chunks), False

        async def replay() -> dict:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)

    async def refuse(
        self, scope: dict, receive: Any, send: Any, read: int, more: bool, drain: bool = True
    ) -> None:
        """Discard the rest of the body (``read`` bytes of it read so far), then answer 413."""
        while more and drain and read <= self.drain:
            message = await receive()
            if message["type"] != "http.request":
                break
            read += len(message.get("body", b""))
            more = message.get("more_body", False)
        response = _error(413, "body", f"the request body is over {self.limit} bytes")
        if more:
            response.headers["connection"] = "close"
        await response(scope, receive, send)


def create_app(
    models: dict[str, ServedModel],
    config: ServeConfig | None = None,
    sessions: SessionStore | None = None,
) -> FastAPI:
    """The app serving ``models`` (see :func:`lstmkit.serve.models.load_models`)."""
    config = config or ServeConfig()
    limits: Limits = config.limits
    store = sessions if sessions is not None else SessionStore(config.sessions)
    app = FastAPI(
        title="lstmkit", version=__version__, description=__doc__.split("\n\n")[0], docs_url=None
    )
    app.state.models, app.state.sessions, app.state.config = models, store, config
    service = Service(models, config, store)
    for router in (model_routes(service), session_routes(service), extra_routes(service)):
        app.include_router(router)

    @app.exception_handler(RequestError)
    async def request_error(request: Request, e: RequestError) -> JSONResponse:
        return JSONResponse(e.body(), status_code=e.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0]
        loc = tuple(first.get("loc", ()))
        if loc[:1] == ("body",):
            loc = loc[1:]
        message = first.get("msg", "invalid")
        if first.get("type") == "json_invalid":
            message = "the body is not valid UTF-8 JSON"
            loc = ()
        return _error(422, _validation_field(loc), message)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
        if e.status_code == 400:  # starlette could not read the body (not UTF-8, not JSON)
            return _error(400, "body", "the body is not valid UTF-8 JSON (or nested too deep)")
        response = _error(
            e.status_code, "path" if e.status_code == 404 else "method", str(e.detail)
        )
        response.headers.update(e.headers or {})  # e.g. 405's Allow
        return response

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        # Swagger UI from static/swagger (swagger-ui-dist 5.36.0, Apache-2.0): no CDN, so
        # the page works offline; no online validator either
        root = request.scope.get("root_path", "").rstrip("/")
        assets = f"{root}/static/swagger"
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title="lstmkit - Swagger UI",
            swagger_js_url=f"{assets}/swagger-ui-bundle.js",
            swagger_css_url=f"{assets}/swagger-ui.css",
            swagger_favicon_url=f"{assets}/favicon-32x32.png",
            swagger_ui_parameters={"validatorUrl": None},
        )

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(BodyLimit, limit=limits.max_body_bytes)
    return app
