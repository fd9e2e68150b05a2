"""The HTTP routes, by what they serve: the models (health, listing, ``predict``), streaming
sessions, and the endpoints a Predictor offers by having what they call (``generate_tokens``,
``gate_inputs``, ``attention``, ``transcribe_audio``). :func:`lstmkit.serve.app.create_app`
puts them together; none of them knows a task by name.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from lstmkit.serve.config import Limits, ServeConfig
from lstmkit.serve.inputs import RequestError, check_inputs, check_max_new, check_text
from lstmkit.serve.models import ServedModel
from lstmkit.serve.schemas import (
    ERRORS,
    AttentionRequest,
    GatesRequest,
    GenerateRequest,
    PredictRequest,
    PredictResponse,
    SessionOpened,
    StepRequest,
)
from lstmkit.serve.sessions import SessionStore


class Service:
    """What every route reads: the served ``models``, the server's ``config`` (its
    ``limits``) and the session ``store``; and the checks and calls routes share."""

    def __init__(
        self, models: dict[str, ServedModel], config: ServeConfig, store: SessionStore
    ) -> None:
        self.models, self.config, self.store = models, config, store
        self.limits: Limits = config.limits

    def model(self, name: str) -> ServedModel:
        if name not in self.models:
            raise RequestError(
                404, "name", f"no model named {name!r}; served: {', '.join(sorted(self.models))}"
            )
        return self.models[name]

    def need(self, served: ServedModel, ok: bool, what: str) -> None:
        if not ok:
            raise RequestError(404, "name", f"model {served.name!r} ({served.task}) has no {what}")

    async def in_worker(self, served: ServedModel, fn: Any, *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(
                loop.run_in_executor(served.executor, fn, *args), self.limits.timeout_s
            )
        except asyncio.TimeoutError:
            raise RequestError(
                504, "timeout", f"no result within {self.limits.timeout_s:g} s"
            ) from None

    def capabilities(self, served: ServedModel) -> list[str]:
        p = served.predictor
        # a model that reads audio takes it at /transcribe, not as JSON inputs
        caps = ["transcribe"] if hasattr(p, "transcribe_audio") else ["predict"]
        for cap, method in (
            ("sessions", "open_stream"),
            ("generate", "generate_tokens"),
            ("gates", "gate_inputs"),
            ("attention", "attention"),
        ):
            if hasattr(p, method):
                caps.append(cap)
        return caps

    async def stream_call(self, served: ServedModel, fn: Any, *args: Any) -> Any:
        """``fn(*args)`` of a stream in the model's worker; a refused chunk is a 422."""
        try:
            return await self.in_worker(served, fn, *args)
        except ValueError as e:
            raise RequestError(422, getattr(e, "field", "input"), str(e)) from None


def model_routes(s: Service) -> APIRouter:
    """Health, readiness, the list of models and ``predict``."""
    router = APIRouter()

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz")
    async def readyz() -> dict[str, Any]:
        return {"status": "ready", "models": sorted(s.models)}

    @router.get("/v1/models")
    async def list_models() -> dict[str, list[dict[str, Any]]]:
        out = []
        for served in s.models.values():
            info = served.info()
            info["endpoints"] = s.capabilities(served)
            out.append(info)
        return {"models": out}

    @router.post("/v1/models/{name}/predict", response_model=PredictResponse, responses=ERRORS)
    async def predict(name: str, body: PredictRequest) -> Response:
        served = s.model(name)
        check_inputs(served.predictor, body.inputs, s.limits)
        try:
            outputs = await asyncio.wait_for(
                served.batcher.predict(body.inputs), s.limits.timeout_s
            )
        except asyncio.TimeoutError:
            raise RequestError(
                504, "timeout", f"no result within {s.limits.timeout_s:g} s"
            ) from None
        except (ValueError, TypeError, KeyError) as e:  # the Predictor refused an input
            message = " ".join(str(e).split()) or type(e).__name__
            raise RequestError(422, "inputs", message) from None
        try:
            content = json.dumps({"outputs": outputs}, allow_nan=False)
        except ValueError:
            raise RequestError(
                422,
                "inputs",
                "the model's output is not finite for these inputs (values too large?)",
            ) from None
        return Response(content, media_type="application/json")

    return router


def session_routes(s: Service) -> APIRouter:
    """Open, step and close a streaming session (:mod:`lstmkit.serve.sessions`)."""
    router = APIRouter()

    @router.post(
        "/v1/models/{name}/sessions",
        response_model=SessionOpened,
        status_code=201,
        responses=ERRORS,
    )
    async def open_session(name: str) -> SessionOpened:
        served = s.model(name)
        s.need(served, hasattr(served.predictor, "open_stream"), "streaming sessions")
        stream = await s.stream_call(served, served.predictor.open_stream)
        session = s.store.create(name, stream, stream.nbytes, asyncio.Lock())
        return SessionOpened(
            session_id=session.id, model=name, idle_timeout_s=s.config.sessions.idle_timeout_s
        )

    @router.post("/v1/models/{name}/sessions/{session_id}/step", responses=ERRORS)
    async def step_session(name: str, session_id: str, body: StepRequest) -> dict[str, Any]:
        served = s.model(name)
        s.need(served, hasattr(served.predictor, "open_stream"), "streaming sessions")
        if isinstance(body.input, str):
            check_text(body.input, "input", s.limits)
        elif len(body.input) > s.limits.max_numbers:
            raise RequestError(413, "input", f"more than {s.limits.max_numbers} numbers")
        session = s.store.get(name, session_id)
        options = {"top_k": body.top_k, "distribution": body.distribution, "final": body.final}
        async with session.lock:
            output, stream = await s.stream_call(served, session.state.step, body.input, options)
            s.store.update(session, stream, stream.nbytes)
        return {"session_id": session.id, "step": session.steps, **output}

    @router.delete("/v1/models/{name}/sessions/{session_id}", status_code=204, responses=ERRORS)
    async def close_session(name: str, session_id: str) -> Response:
        s.model(name)
        s.store.close(name, session_id)
        return Response(status_code=204)

    return router


def extra_routes(s: Service) -> APIRouter:
    """Text generation (server-sent events), gate heat-maps, attention maps, transcription."""
    router = APIRouter()

    @router.post(
        "/v1/models/{name}/generate",
        responses={
            **ERRORS,
            200: {
                "content": {"text/event-stream": {}},
                "description": "one event per token, then `done`",
            },
        },
        response_class=StreamingResponse,
    )
    async def generate_stream(name: str, body: GenerateRequest) -> StreamingResponse:
        served = s.model(name)
        s.need(served, hasattr(served.predictor, "generate_tokens"), "text generation")
        check_text(body.prompt, "prompt", s.limits)
        check_max_new(body.max_new_tokens, "max_new_tokens", s.limits)
        p = served.predictor
        tokens = p.generate_tokens(
            body.prompt,
            body.max_new_tokens,
            temperature=body.temperature,
            top_k=body.top_k,
            top_p=body.top_p,
            seed=body.seed,
        )
        end = object()
        try:  # the first token before the 200: a refused prompt is a 422, not a broken stream
            first = await s.in_worker(served, next, tokens, end)
        except ValueError as e:
            raise RequestError(422, "prompt", str(e)) from None

        def next_token() -> Any:  # one token a call (lstmkit.kernels.short_step runs it)
            return next(tokens, end)

        async def events() -> AsyncIterator[str]:
            text, piece = "", first
            while piece is not end:
                text += piece
                yield f"data: {json.dumps({'text': piece})}\n\n"
                piece = await s.in_worker(served, next_token)
            yield f"event: done\ndata: {json.dumps({'prompt': body.prompt, 'text': text})}\n\n"

        return StreamingResponse(
            events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )

    @router.post("/v1/models/{name}/gates", responses=ERRORS)
    async def gates(name: str, body: GatesRequest) -> dict[str, Any]:
        served = s.model(name)
        s.need(served, hasattr(served.predictor, "gate_inputs"), "gate heat-maps")
        text = check_text(body.text, "text", s.limits)

        def compute() -> dict[str, Any]:
            from lstmkit.viz.heatmap import gate_activations

            rnn, x, tokens = served.predictor.gate_inputs(text)
            acts = gate_activations(rnn, x)  # name -> (H, L)
            prediction = served.predictor.predict([text])[0]
            means = {k: [round(float(v), 5) for v in a.mean(0)] for k, a in acts.items()}
            return {"tokens": tokens, "gates": means, **prediction}

        try:
            return await s.in_worker(served, compute)
        except ValueError as e:
            raise RequestError(422, "text", str(e)) from None

    @router.post("/v1/models/{name}/attention", responses=ERRORS)
    async def attention(name: str, body: AttentionRequest) -> dict[str, Any]:
        served = s.model(name)
        s.need(served, hasattr(served.predictor, "attention"), "attention maps")
        text = check_text(body.text, "text", s.limits)
        try:
            return await s.in_worker(served, served.predictor.attention, text)
        except ValueError as e:
            raise RequestError(422, "text", str(e)) from None

    @router.post(
        "/v1/models/{name}/transcribe",
        responses=ERRORS,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"audio/wav": {"schema": {"type": "string", "format": "binary"}}},
            }
        },
    )
    async def transcribe(name: str, request: Request) -> dict[str, Any]:
        from lstmkit.data.audio import read_wav

        served = s.model(name)
        s.need(served, hasattr(served.predictor, "transcribe_audio"), "transcription")
        data = await request.body()
        rate = served.predictor.sample_rate
        try:
            audio = read_wav("upload", rate, data=data)
        except ValueError as e:
            raise RequestError(422, "body", str(e)) from None
        seconds = audio.size / rate
        if seconds > s.limits.max_audio_seconds:
            raise RequestError(
                413,
                "body",
                f"the audio lasts {seconds:.1f} s; at most {s.limits.max_audio_seconds:g} s",
            )
        return await s.in_worker(served, served.predictor.transcribe_audio, audio, "upload")

    return router
