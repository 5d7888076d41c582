"""Model calls are tool calls with side effect ``model``; the scripted model runs offline."""

from __future__ import annotations

import hashlib
import time
from typing import Any

from pydantic import BaseModel, Field
from temporalio import activity

from runrecord.activities._tool import tool
from runrecord.records import ModelResult, ModelSpec

# USD per 1,000 tokens (input, output). Extend with set_price().
_prices: dict[str, tuple[float, float]] = {"scripted-1": (0.0005, 0.0015)}
_scripts: dict[str, list[ModelResult]] = {}


class Prompt(BaseModel):
    """A prompt template with a declared name and version."""

    name: str
    version: str
    template: str

    @property
    def prompt_version(self) -> str:
        """Declared name@version plus the sha256 of the template text."""
        digest = hashlib.sha256(self.template.encode()).hexdigest()
        return f"{self.name}@{self.version}:{digest[:12]}"


class ModelRequest(BaseModel):
    agent_id: str
    model: ModelSpec
    prompt: Prompt
    messages: list[str] = Field(default_factory=list)
    step: int = 0


def set_price(model: str, input_per_1k: float, output_per_1k: float) -> None:
    _prices[model] = (input_per_1k, output_per_1k)


def price(model: str, input_tokens: int, output_tokens: int) -> float:
    per_in, per_out = _prices.get(model, (0.0, 0.0))
    return round(input_tokens / 1000 * per_in + output_tokens / 1000 * per_out, 8)


def register_script(name: str, steps: list[ModelResult]) -> None:
    """Give the scripted model what to answer, one step per call, for a script name."""
    _scripts[name] = steps


def _scripted(request: ModelRequest) -> ModelResult:
    script = str(request.model.parameters.get("script", request.agent_id))
    steps = _scripts.get(script)
    if steps is None:
        raise ValueError(f"scripted model has no script named {script!r}")
    if request.step >= len(steps):
        return ModelResult(provider="scripted", model=request.model.name, done=True)
    return steps[request.step]


@tool("model", idempotent=True)
@activity.defn(name="runrecord.model_call")
async def call_model(request: ModelRequest) -> ModelResult:
    """Ask the configured model for the next decision."""
    started = time.perf_counter()
    if request.model.provider != "scripted":
        raise ValueError(f"unknown model provider {request.model.provider!r}")
    decision = _scripted(request)
    prompt_text = request.prompt.template + " " + " ".join(request.messages)
    input_tokens = len(prompt_text.split())
    output_tokens = max(1, len((decision.content or "").split()) + len(decision.arguments))
    fields: dict[str, Any] = decision.model_dump()
    fields.update(
        provider=request.model.provider,
        model=request.model.name,
        prompt_version=request.prompt.prompt_version,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cost=price(request.model.name, input_tokens, output_tokens),
        latency_ms=int((time.perf_counter() - started) * 1000),
    )
    return ModelResult(**fields)
