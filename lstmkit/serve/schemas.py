"""The request and response bodies of the HTTP API (pydantic models: the OpenAPI schema)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, JsonValue

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
