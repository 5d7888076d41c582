"""Payloads as the agent saw them: history decoded with the payload codec that encoded it.

A client with a payload codec (encryption, compression) writes ciphertext into
history: inputs, results, failures' details, memos and, if the client says so, headers.
The projection hashes, redacts and reads payloads, so a page of history is decoded
before it is folded, in one batch per page (``PayloadCodec.decode`` is async).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload
from temporalio.api.failure.v1 import Failure
from temporalio.api.history.v1 import HistoryEvent
from temporalio.converter import PayloadCodec

_PAYLOAD = Payload.DESCRIPTOR.full_name
_FAILURE = Failure.DESCRIPTOR.full_name
# Search attributes are never encoded: the server has to index them.
_NOT_ENCODED = {"temporal.api.common.v1.SearchAttributes"}


async def decode_events(events: Iterable[HistoryEvent], codec: PayloadCodec | None) -> None:
    """Decode, in place, every payload of ``events`` with ``codec`` (nothing without one).

    The codec must pass payloads it did not encode through unchanged, as Temporal's own
    codecs do: headers are encoded only under ``HeaderCodecBehavior.CODEC``.
    """
    if codec is None:
        return
    payloads: list[Payload] = []
    failures: list[Failure] = []
    for event in events:
        _collect(event, payloads, failures)
    if not payloads:
        return
    decoded = await codec.decode(payloads)
    if len(decoded) != len(payloads):
        raise ValueError(f"payload codec returned {len(decoded)} payloads for {len(payloads)}")
    for payload, plain in zip(payloads, decoded, strict=True):
        if plain is not payload:
            payload.CopyFrom(plain)
    for failure in failures:
        _restore_common_attributes(failure)


async def decode_memo(
    fields: Mapping[str, Payload], codec: PayloadCodec | None
) -> dict[str, Payload]:
    """A memo (from describe or visibility) with its values decoded by ``codec``."""
    if codec is None or not fields:
        return dict(fields)
    return dict(zip(fields, await codec.decode(list(fields.values())), strict=True))


def _collect(message: Message, payloads: list[Payload], failures: list[Failure]) -> None:
    name = message.DESCRIPTOR.full_name
    if name == _PAYLOAD:
        payloads.append(message)  # type: ignore[arg-type]
        return
    if name in _NOT_ENCODED:
        return
    if name == _FAILURE and message.HasField("encoded_attributes"):  # type: ignore[attr-defined]
        failures.append(message)  # type: ignore[arg-type]
    for field, value in message.ListFields():
        entry = field.message_type
        if field.type != FieldDescriptor.TYPE_MESSAGE or entry is None:
            continue
        if entry.GetOptions().map_entry:
            value_field = entry.fields_by_name["value"]
            if value_field.type == FieldDescriptor.TYPE_MESSAGE:
                for item in value.values():
                    _collect(item, payloads, failures)
        elif _repeated(field):
            for item in value:
                _collect(item, payloads, failures)
        else:
            _collect(value, payloads, failures)


def _repeated(field: FieldDescriptor) -> bool:
    # protobuf 5.28 added is_repeated and 7 removed label; temporalio allows both.
    repeated = getattr(field, "is_repeated", None)
    if repeated is None:
        return bool(getattr(field, "label", None) == FieldDescriptor.LABEL_REPEATED)
    return bool(repeated)


def _restore_common_attributes(failure: Failure) -> None:
    """A failure converter that encodes common attributes moves the message into a payload."""
    encoded = failure.encoded_attributes
    if encoded.metadata.get("encoding") != b"json/plain":
        return
    try:
        attributes: Any = json.loads(encoded.data)
    except ValueError:
        return
    if not isinstance(attributes, dict):
        return
    if isinstance(attributes.get("message"), str):
        failure.message = attributes["message"]
    if isinstance(attributes.get("stack_trace"), str):
        failure.stack_trace = attributes["stack_trace"]
