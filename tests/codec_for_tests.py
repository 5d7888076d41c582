"""An encrypting payload codec, as a user of Temporal would write one (AES-GCM)."""

from __future__ import annotations

import os
from collections.abc import Sequence

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

ENCRYPTED = b"binary/encrypted"
KEY_ID = b"test-key"
_KEY = bytes(range(32))


class EncryptionCodec(PayloadCodec):
    def __init__(self, key: bytes = _KEY) -> None:
        self._aead = AESGCM(key)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [
            Payload(
                metadata={"encoding": ENCRYPTED, "encryption-key-id": KEY_ID},
                data=self._encrypt(p.SerializeToString()),
            )
            for p in payloads
        ]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        decoded = []
        for p in payloads:
            if p.metadata.get("encoding") != ENCRYPTED:
                decoded.append(p)  # not ours: e.g. a header sent without the codec
                continue
            if p.metadata.get("encryption-key-id") != KEY_ID:
                raise ValueError("unknown encryption key")
            decoded.append(Payload.FromString(self._decrypt(p.data)))
        return decoded

    def _encrypt(self, data: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, data, None)

    def _decrypt(self, data: bytes) -> bytes:
        return self._aead.decrypt(data[:12], data[12:], None)


CODEC = EncryptionCodec()
"""For ``RUNRECORD_PAYLOAD_CODEC=tests.codec_for_tests:CODEC``."""
