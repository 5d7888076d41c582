"""Secrets of every kind runrecord must never write, each inside realistic text.

Every value is fake but shaped like the real thing. ``SECRETS`` maps a name to
(the text a tool might see, the secret part that must never be written).
"""

from __future__ import annotations

import base64
import json

_JWT_HEAD = base64.urlsafe_b64encode(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
_JWT_BODY = base64.urlsafe_b64encode(json.dumps({"sub": "ops-bot", "iat": 1735000000}).encode())
_JWT = f"{_JWT_HEAD.decode().rstrip('=')}.{_JWT_BODY.decode().rstrip('=')}.Qm9ndXNTaWduYXR1cmVYWVo"
_PEM_BODY = "MIIEowIBAAKCAQEAz3kQm9PqR7vXw2YtL8sN4dF6hJ1cB5nK0gU2rT9eW3xZ7aVy"
_AZURE = "Zm9vYmFyYmF6cXV4" * 5 + "Zm9vYmFyYmE="[:8]

CONFIGURED_PATTERN = r"ACME-INTERNAL-[0-9]{8}"

SECRETS: dict[str, tuple[str, str]] = {
    "aws_access_key": ("using key AKIAQ7XW3R2ZPL5M4N8B for s3", "AKIAQ7XW3R2ZPL5M4N8B"),
    "aws_secret_key": (
        'aws_secret_access_key = "Tq8xW2vR9zK4mN7pL3sY6bH1jF5cD0gE8aU2iO4e"',
        "Tq8xW2vR9zK4mN7pL3sY6bH1jF5cD0gE8aU2iO4e",
    ),
    "gcp_api_key": (
        "maps?key=AIzaSyD3x9Qw7LmT2rVb8NcZ4pK6hJ1sF5gY0aE",
        "AIzaSyD3x9Qw7LmT2rVb8NcZ4pK6hJ1sF5gY0aE",
    ),
    "gcp_private_key": (
        "-----BEGIN PRIVATE KEY-----\n" + _PEM_BODY + "\n-----END PRIVATE KEY-----\n",
        _PEM_BODY,
    ),
    "azure_storage_key": (
        f"DefaultEndpointsProtocol=https;AccountName=acme;AccountKey={_AZURE};",
        _AZURE,
    ),
    "openai_key": (
        "OPENAI key sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAB7cDE0fGH3iJK",
        "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAB7cDE0fGH3iJK",
    ),
    "openai_legacy_key": (
        "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",
        "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",
    ),
    "anthropic_key": (
        "x-api-key: sk-ant-api03-Q2w3E4r5T6y7U8i9O0pA1sD2fG3hJ4kL5zX6cV7bN8m-AA",
        "sk-ant-api03-Q2w3E4r5T6y7U8i9O0pA1sD2fG3hJ4kL5zX6cV7bN8m-AA",
    ),
    "github_token": (
        "git push https://github.com with ghp_R4nd0mT0k3nV4lu3F0rT3st1ngPurp0s3s12",
        "ghp_R4nd0mT0k3nV4lu3F0rT3st1ngPurp0s3s12",
    ),
    "slack_token": (
        "post with xoxb-204857201234-1928374650123-Qw3rTy7uI9oP1aS2dF4gH6jK",
        "xoxb-204857201234-1928374650123-Qw3rTy7uI9oP1aS2dF4gH6jK",
    ),
    "stripe_key": (
        "charge via sk_live_4eC39HqLyjWDarjtT1zdp7dc",
        "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
    ),
    "bearer_token": (
        "Authorization: Bearer mF_9.B5f-4.1JqM-long-opaque-token",
        "mF_9.B5f-4.1JqM-long-opaque-token",
    ),
    "jwt": (f"session {_JWT}", _JWT),
    "url_password": (
        "postgresql://admin:Pr0d-Db-P4ssw0rd@db.internal:5432/app",
        "Pr0d-Db-P4ssw0rd",
    ),
    "password_field": ("login user=ops password=hunter2-staging-7", "hunter2-staging-7"),
    "configured_pattern": ("ticket ACME-INTERNAL-40417788 attached", "ACME-INTERNAL-40417788"),
}

# A secret in a secret-named JSON field, found by name and entropy rather than by shape.
NAMED_FIELD_SECRET = "q8Zr2LmX9vTnW4kPc7Ys1bQe"


def all_secrets() -> list[str]:
    return [secret for _, secret in SECRETS.values()] + [NAMED_FIELD_SECRET]


def secret_text() -> str:
    """One text carrying every shaped secret."""
    return "\n".join(text for text, _ in SECRETS.values())
