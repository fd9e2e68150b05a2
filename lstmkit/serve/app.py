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

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, JsonValue
from starlette.exceptions import HTTPException as StarletteHTTPException

from lstmkit.serve.config import Limits, ServeConfig
from lstmkit.serve.inputs import RequestError, check_inputs, check_max_new, check_text
from lstmkit.serve.models import ServedModel
from lstmkit.serve.sessions import SessionStore
from lstmkit.version import __version__

STATIC = Path(__file__).resolve().parent / "static"
SEED_MAX = 2**31 - 1  # exact in every JSON parser (a float near 2**63 is not)


class ErrorDetail(BaseModel):
    status: int
    field: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    inputs: list[JsonValue] = Field(
        min_length=1,
        description="what the task's Predictor reads: texts (sentiment, translate), prompts "
        "or {prompt, max_new, temperature, ...} (lm), lists of numbers (forecast), lists of "
        "steps (lab)",
    )


class PredictResponse(BaseModel):
    outputs: list[dict[str, JsonValue]]


class GenerateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prompt: str = Field(min_length=1)
    max_new_tokens: int = 200
    temperature: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)] = 1.0
    top_k: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    top_p: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] | None = None
    seed: Annotated[int, Field(ge=0, le=SEED_MAX)] | None = 0


class StepRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    input: str | list[float] = Field(
        min_length=1,
        description="the next chunk of the stream (lm: characters; speech: samples at the "
        "model's rate)",
    )
    top_k: Annotated[int, Field(ge=1, le=100)] = 5
    distribution: bool = False
    final: bool = Field(False, description="speech: the stream ends with this chunk")


class GatesRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1)


class AttentionRequest(GatesRequest):
    """One source sentence for ``/attention``."""


class SessionOpened(BaseModel):
    session_id: str
    model: str
    idle_timeout_s: float


ERRORS = {
    code: {"model": ErrorBody, "description": text}
    for code, text in [
        (400, "a body that is not UTF-8 JSON"),
        (404, "unknown model, session or capability"),
        (413, "payload over a limit"),
        (422, "invalid request"),
        (429, "too many sessions"),
        (504, "timed out"),
    ]
}


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

    async def refuse(self, scope: dict, receive: Any, send: Any, read: int, more: bool,
                     drain: bool = True) -> None:  # fmt: skip
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


def create_app(models: dict[str, ServedModel], config: ServeConfig | None = None,
               sessions: SessionStore | None = None) -> FastAPI:  # fmt: skip
    """The app serving ``models`` (see :func:`lstmkit.serve.models.load_models`)."""
    config = config or ServeConfig()
    limits: Limits = config.limits
    store = sessions if sessions is not None else SessionStore(config.sessions)
    app = FastAPI(title="lstmkit", version=__version__, description=__doc__.split("\n\n")[0],
                  docs_url=None)  # fmt: skip
    app.state.models, app.state.sessions, app.state.config = models, store, config

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
        response = _error(e.status_code, "path" if e.status_code == 404 else "method",
                          str(e.detail))  # fmt: skip
        response.headers.update(e.headers or {})  # e.g. 405's Allow
        return response

    def model(name: str) -> ServedModel:
        if name not in models:
            raise RequestError(404, "name", f"no model named {name!r}; served: "
                               f"{', '.join(sorted(models))}")  # fmt: skip
        return models[name]

    def need(served: ServedModel, ok: bool, what: str) -> None:
        if not ok:
            raise RequestError(404, "name", f"model {served.name!r} ({served.task}) has no "
                               f"{what}")  # fmt: skip

    async def in_worker(served: ServedModel, fn: Any, *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(
                loop.run_in_executor(served.executor, fn, *args), limits.timeout_s
            )
        except asyncio.TimeoutError:
            raise RequestError(504, "timeout", f"no result within {limits.timeout_s:g} s") from None

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> dict[str, Any]:
        return {"status": "ready", "models": sorted(models)}

    @app.get("/v1/models")
    async def list_models() -> dict[str, list[dict[str, Any]]]:
        out = []
        for served in models.values():
            info = served.info()
            info["endpoints"] = capabilities(served)
            out.append(info)
        return {"models": out}

    def capabilities(served: ServedModel) -> list[str]:
        p = served.predictor
        # a model that reads audio takes it at /transcribe, not as JSON inputs
        caps = ["transcribe"] if hasattr(p, "transcribe_audio") else ["predict"]
        for cap, method in (("sessions", "open_stream"), ("generate", "generate_tokens"),
                            ("gates", "gate_inputs"), ("attention", "attention")):  # fmt: skip
            if hasattr(p, method):
                caps.append(cap)
        return caps

    async def stream_call(served: ServedModel, fn: Any, *args: Any) -> Any:
        """``fn(*args)`` of a stream in the model's worker; a refused chunk is a 422."""
        try:
            return await in_worker(served, fn, *args)
        except ValueError as e:
            raise RequestError(422, getattr(e, "field", "input"), str(e)) from None

    @app.post("/v1/models/{name}/predict", response_model=PredictResponse, responses=ERRORS)
    async def predict(name: str, body: PredictRequest) -> Response:
        served = model(name)
        check_inputs(served.predictor, body.inputs, limits)
        try:
            outputs = await asyncio.wait_for(served.batcher.predict(body.inputs), limits.timeout_s)
        except asyncio.TimeoutError:
            raise RequestError(504, "timeout", f"no result within {limits.timeout_s:g} s") from None
        except (ValueError, TypeError, KeyError) as e:  # the Predictor refused an input
            message = " ".join(str(e).split()) or type(e).__name__
            raise RequestError(422, "inputs", message) from None
        try:
            content = json.dumps({"outputs": outputs}, allow_nan=False)
        except ValueError:
            raise RequestError(422, "inputs", "the model's output is not finite for these "
                               "inputs (values too large?)") from None  # fmt: skip
        return Response(content, media_type="application/json")

    @app.post("/v1/models/{name}/sessions", response_model=SessionOpened, status_code=201,
              responses=ERRORS)  # fmt: skip
    async def open_session(name: str) -> SessionOpened:
        served = model(name)
        need(served, hasattr(served.predictor, "open_stream"), "streaming sessions")
        stream = await stream_call(served, served.predictor.open_stream)
        session = store.create(name, stream, stream.nbytes, asyncio.Lock())
        return SessionOpened(session_id=session.id, model=name,
                             idle_timeout_s=config.sessions.idle_timeout_s)  # fmt: skip

    @app.post("/v1/models/{name}/sessions/{session_id}/step", responses=ERRORS)
    async def step_session(name: str, session_id: str, body: StepRequest) -> dict[str, Any]:
        served = model(name)
        need(served, hasattr(served.predictor, "open_stream"), "streaming sessions")
        if isinstance(body.input, str):
            check_text(body.input, "input", limits)
        elif len(body.input) > limits.max_numbers:
            raise RequestError(413, "input", f"more than {limits.max_numbers} numbers")
        session = store.get(name, session_id)
        options = {"top_k": body.top_k, "distribution": body.distribution, "final": body.final}
        async with session.lock:
            output, stream = await stream_call(served, session.state.step, body.input, options)
            store.update(session, stream, stream.nbytes)
        return {"session_id": session.id, "step": session.steps, **output}

    @app.delete("/v1/models/{name}/sessions/{session_id}", status_code=204, responses=ERRORS)
    async def close_session(name: str, session_id: str) -> Response:
        model(name)
        store.close(name, session_id)
        return Response(status_code=204)

    @app.post(
        "/v1/models/{name}/generate",
        responses={**ERRORS, 200: {"content": {"text/event-stream": {}},
                                   "description": "one event per token, then `done`"}},
        response_class=StreamingResponse,
    )  # fmt: skip
    async def generate_stream(name: str, body: GenerateRequest) -> StreamingResponse:
        served = model(name)
        need(served, hasattr(served.predictor, "generate_tokens"), "text generation")
        check_text(body.prompt, "prompt", limits)
        check_max_new(body.max_new_tokens, "max_new_tokens", limits)
        p = served.predictor
        tokens = p.generate_tokens(body.prompt, body.max_new_tokens,
                                   temperature=body.temperature, top_k=body.top_k,
                                   top_p=body.top_p, seed=body.seed)  # fmt: skip
        end = object()
        try:  # the first token before the 200: a refused prompt is a 422, not a broken stream
            first = await in_worker(served, next, tokens, end)
        except ValueError as e:
            raise RequestError(422, "prompt", str(e)) from None

        def next_token() -> Any:  # one token a call (lstmkit.kernels.short_step runs it)
            return next(tokens, end)

        async def events() -> AsyncIterator[str]:
            text, piece = "", first
            while piece is not end:
                text += piece
                yield f"data: {json.dumps({'text': piece})}\n\n"
                piece = await in_worker(served, next_token)
            yield f"event: done\ndata: {json.dumps({'prompt': body.prompt, 'text': text})}\n\n"

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})  # fmt: skip

    @app.post("/v1/models/{name}/gates", responses=ERRORS)
    async def gates(name: str, body: GatesRequest) -> dict[str, Any]:
        served = model(name)
        need(served, hasattr(served.predictor, "gate_inputs"), "gate heat-maps")
        text = check_text(body.text, "text", limits)

        def compute() -> dict[str, Any]:
            from lstmkit.viz.heatmap import gate_activations

            rnn, x, tokens = served.predictor.gate_inputs(text)
            acts = gate_activations(rnn, x)  # name -> (H, L)
            prediction = served.predictor.predict([text])[0]
            means = {k: [round(float(v), 5) for v in a.mean(0)] for k, a in acts.items()}
            return {"tokens": tokens, "gates": means, **prediction}

        try:
            return await in_worker(served, compute)
        except ValueError as e:
            raise RequestError(422, "text", str(e)) from None

    @app.post("/v1/models/{name}/attention", responses=ERRORS)
    async def attention(name: str, body: AttentionRequest) -> dict[str, Any]:
        served = model(name)
        need(served, hasattr(served.predictor, "attention"), "attention maps")
        text = check_text(body.text, "text", limits)
        try:
            return await in_worker(served, served.predictor.attention, text)
        except ValueError as e:
            raise RequestError(422, "text", str(e)) from None

    @app.post(
        "/v1/models/{name}/transcribe",
        responses=ERRORS,
        openapi_extra={"requestBody": {"required": True, "content": {
            "audio/wav": {"schema": {"type": "string", "format": "binary"}}}}},
    )  # fmt: skip
    async def transcribe(name: str, request: Request) -> dict[str, Any]:
        from lstmkit.data.audio import read_wav

        served = model(name)
        need(served, hasattr(served.predictor, "transcribe_audio"), "transcription")
        data = await request.body()
        rate = served.predictor.sample_rate
        try:
            audio = read_wav("upload", rate, data=data)
        except ValueError as e:
            raise RequestError(422, "body", str(e)) from None
        seconds = audio.size / rate
        if seconds > limits.max_audio_seconds:
            raise RequestError(413, "body", f"the audio lasts {seconds:.1f} s; at most "
                               f"{limits.max_audio_seconds:g} s")  # fmt: skip
        return await in_worker(served, served.predictor.transcribe_audio, audio, "upload")

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
