"""What a model call cost: the user's prices first, then ``genai-prices``.

``genai-prices`` is kept current by its maintainers and knows providers, model ids and
their aliases, cache and reasoning token prices. A user's own price (``set_price`` or the
``RUNRECORD_PRICES`` file, USD per 1,000 tokens) wins over it. A model neither knows is
*unpriced*: its cost reads 0 and the record says the figure is missing, never a silent 0.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

PRICES_ENV = "RUNRECORD_PRICES"
"""A JSON file {"model": [input USD per 1k tokens, output USD per 1k tokens], ...}."""

# USD per 1,000 tokens (input, output), by model id or provider/model id.
_overrides: dict[str, tuple[float, float]] = {"scripted-1": (0.0005, 0.0015)}
_overrides_loaded = False


@dataclass(frozen=True)
class Price:
    cost: float
    priced: bool


def set_price(model: str, input_per_1k: float, output_per_1k: float) -> None:
    """Price ``model`` (a model id, or ``provider/model``) at these USD per 1,000 tokens."""
    _overrides[model] = (input_per_1k, output_per_1k)


def load_prices(path: Path) -> None:
    """Add the prices in a JSON file ``{"model": [input_per_1k, output_per_1k]}``."""
    try:
        table = json.loads(path.read_text())
        for model, (per_in, per_out) in table.items():
            set_price(str(model), float(per_in), float(per_out))
    except (OSError, ValueError, TypeError, AttributeError) as err:
        raise ValueError(f"cannot read price table {path}: {err}") from None


def _override(provider: str | None, model: str) -> tuple[float, float] | None:
    global _overrides_loaded
    if not _overrides_loaded:
        _overrides_loaded = True
        configured = os.environ.get(PRICES_ENV)
        if configured:
            load_prices(Path(configured).expanduser())
    if provider and f"{provider}/{model}" in _overrides:
        return _overrides[f"{provider}/{model}"]
    return _overrides.get(model)


def price(
    provider: str | None,
    model: str,
    input_tokens: int,
    output_tokens: int,
    *,
    cache_read_tokens: int = 0,
    cache_write_tokens: int = 0,
) -> Price:
    """The cost in USD of one model call's tokens, and whether any price was known.

    ``input_tokens`` includes the cached ones, as providers count them."""
    own = _override(provider, model)
    if own is not None:
        per_in, per_out = own
        cost = input_tokens / 1000 * per_in + output_tokens / 1000 * per_out
        return Price(round(cost, 8), True)
    if input_tokens == 0 and output_tokens == 0:
        return Price(0.0, True)
    from genai_prices import Usage, calc_price  # its price snapshot loads in ~0.3 s

    usage = Usage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_tokens=cache_read_tokens or None,
        cache_write_tokens=cache_write_tokens or None,
    )
    try:
        found = calc_price(usage, model_ref=model, provider_id=provider or None)
    except LookupError:
        try:
            found = calc_price(usage, model_ref=model)
        except LookupError:
            return Price(0.0, False)
    return Price(round(float(found.total_price), 8), True)
