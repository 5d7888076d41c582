"""Model calls are tool calls with side effect ``model``.

Providers: ``scripted`` (offline, answers from a registered script) and ``openai``
(any OpenAI-compatible endpoint, through the official ``openai`` package, the
``runrecord[openai]`` extra). A failed model call is retried by Temporal, and each
attempt takes the next route of the model spec (the model, then its fallbacks), so
"model A failed, model B answered" is two attempts in ``retryState``.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from typing import Any

from pydantic import BaseModel, Field
from temporalio import activity
from temporalio.exceptions import ApplicationError

from runrecord._pricing import price
from runrecord.activities._artifacts import current_call
from runrecord.activities._tool import tool
from runrecord.records import ModelResult, ModelSpec

_scripts: dict[str, list[ModelResult]] = {}

# Model-spec parameters that configure runrecord or the connection, not the model.
_CLIENT_PARAMETERS = ("script", "base_url", "api_key_env", "timeout")


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


def register_script(name: str, steps: list[ModelResult]) -> None:
    """Give the scripted model what to answer, one step per call, for a script name."""
    _scripts[name] = steps


async def _scripted(request: ModelRequest, spec: ModelSpec) -> ModelResult:
    script = str(spec.parameters.get("script", request.agent_id))
    steps = _scripts.get(script)
    if steps is None:
        raise ApplicationError(f"scripted model has no script named {script!r}", non_retryable=True)
    if request.step >= len(steps):
        decision = ModelResult(provider="scripted", model=spec.name, done=True)
    else:
        decision = steps[request.step]
    prompt_text = request.prompt.template + " " + " ".join(request.messages)
    return decision.model_copy(
        update={
            "input_tokens": len(prompt_text.split()),
            "output_tokens": max(
                1, len((decision.content or "").split()) + len(decision.arguments)
            ),
        }
    )


async def _openai(request: ModelRequest, spec: ModelSpec) -> ModelResult:
    try:
        from openai import AsyncOpenAI, OpenAIError
    except ImportError:
        raise ApplicationError(
            "the openai provider needs the openai package: pip install 'runrecord[openai]'",
            non_retryable=True,
        ) from None
    settings = spec.parameters
    api_key = os.environ.get(str(settings.get("api_key_env", "OPENAI_API_KEY")))
    options = {k: v for k, v in settings.items() if k not in _CLIENT_PARAMETERS}
    messages: list[Any] = [{"role": "system", "content": request.prompt.template}]
    messages += [{"role": "user", "content": m} for m in request.messages]
    client = AsyncOpenAI(
        api_key=api_key or "not-set",
        base_url=settings.get("base_url") or os.environ.get("OPENAI_BASE_URL"),
        timeout=float(settings.get("timeout", 60.0)),
        max_retries=0,  # Temporal retries, and each retry may take a fallback route
    )
    try:
        response = await client.chat.completions.create(
            model=spec.name, messages=messages, **options
        )
    except OpenAIError as err:
        raise ApplicationError(f"{spec.route}: {type(err).__name__}: {err}") from None
    finally:
        await client.close()
    choice = response.choices[0]
    message = choice.message
    result = ModelResult(
        provider=spec.provider,
        model=spec.name,
        content=message.content or "",
        done=not message.tool_calls,
        input_tokens=response.usage.prompt_tokens if response.usage else 0,
        output_tokens=response.usage.completion_tokens if response.usage else 0,
    )
    if message.tool_calls:
        first = message.tool_calls[0]
        function = getattr(first, "function", None)
        if function is not None:
            try:
                arguments = json.loads(function.arguments or "{}")
            except ValueError:
                arguments = {}
            result.tool = function.name
            result.arguments = arguments if isinstance(arguments, dict) else {}
    return result


_PROVIDERS = {"scripted": _scripted, "openai": _openai}


def route_for(spec: ModelSpec, attempt: int) -> ModelSpec:
    """The model an attempt uses: the spec, then each fallback, wrapping around."""
    routes = spec.routes()
    return routes[(max(attempt, 1) - 1) % len(routes)]


@tool("model", idempotent=True)
@activity.defn(name="runrecord.model_call")
async def call_model(request: ModelRequest) -> ModelResult:
    """Ask the configured model (or, on a retry, its next fallback) for the next decision."""
    spec = route_for(request.model, activity.info().attempt)
    call = current_call.get()
    if call is not None:
        call.notes["route"] = spec.route
    provider = _PROVIDERS.get(spec.provider)
    if provider is None:
        raise ApplicationError(f"unknown model provider {spec.provider!r}", non_retryable=True)
    started = time.perf_counter()
    decision = await provider(request, spec)
    return decision.model_copy(
        update={
            "provider": spec.provider,
            "model": spec.name,
            "parameters": dict(spec.parameters),
            "prompt_version": request.prompt.prompt_version,
            "cost": price(
                spec.provider, spec.name, decision.input_tokens, decision.output_tokens
            ).cost,
            "latency_ms": int((time.perf_counter() - started) * 1000),
        }
    )
