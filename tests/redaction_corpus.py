"""Secrets of every kind runrecord must never write, each inside realistic text.

Every value is fake but shaped like the real thing, as its provider documents it.
``SECRETS`` maps a name to (the text a tool might see, the secret part that must
never be written); ``leaks`` finds any piece of a secret in a text, so a secret
redacted only in part (a pattern that stops early) still counts as leaked.
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
    # AWS secret access keys, found where the context names them
    "aws_secret_key_env": (
        "export AWS_SECRET_ACCESS_KEY=12XUFWTdnEBw/Y8u3yVdkmoBYp6Sm1EPNamiRt60",
        "12XUFWTdnEBw/Y8u3yVdkmoBYp6Sm1EPNamiRt60",
    ),
    "aws_secret_key_cli": (
        "aws configure set aws_secret_access_key mny/RxplSEt47m2qlc72i4+h58Smg0x2iGF2nSvb",
        "mny/RxplSEt47m2qlc72i4+h58Smg0x2iGF2nSvb",
    ),
    "aws_secret_key_json": (
        '{"AccessKeyId": "ASIAZ5XN2Q7W4R8T3Y6P", '
        '"SecretAccessKey": "sNH3nCUj0kHO2NDx1GeG6L0HA4uTNHNoFazROpRZ"}',
        "sNH3nCUj0kHO2NDx1GeG6L0HA4uTNHNoFazROpRZ",
    ),
    "aws_secret_key_xml": (
        "<SecretAccessKey>27WnV35PWTbTXSG9bU07fcLgoQ3HXMGaABhjDwgU</SecretAccessKey>",
        "27WnV35PWTbTXSG9bU07fcLgoQ3HXMGaABhjDwgU",
    ),
    # OpenAI, Anthropic, Google
    "openai_project_key": (
        "client = OpenAI(api_base, sk-proj-1j9OKMqgiL3lzzbdOzdOmG-0QCfT-_2hRUzGSZkc37gf8s8ZpTpHpF2C"
        "AJB6bpe8SwYqzMwN3KT3BlbkFJ233zlYWVB_HOEQlyIxk6wCCN076fJLlfJ7RiX3O1lpJphqFPOCHIbKvJ9J6jqIIY"
        "bwYlVZaaih)",
        "sk-proj-1j9OKMqgiL3lzzbdOzdOmG-0QCfT-_2hRUzGSZkc37gf8s8ZpTpHpF2CAJB6bpe8SwYqzMwN3KT3BlbkFJ"
        "233zlYWVB_HOEQlyIxk6wCCN076fJLlfJ7RiX3O1lpJphqFPOCHIbKvJ9J6jqIIYbwYlVZaaih",
    ),
    "anthropic_api03_key": (
        "claude with sk-ant-api03-r4dK0V4yg1NtIvYgi6094saKmq3yI7tAPuLdny7XjUYjbUlJCyRGlMojC7Srvty"
        "GpXG8UyywU8irKgSCJ8eNtI6YnANpHAA today",
        "sk-ant-api03-r4dK0V4yg1NtIvYgi6094saKmq3yI7tAPuLdny7XjUYjbUlJCyRGlMojC7SrvtyGpXG8UyywU8"
        "irKgSCJ8eNtI6YnANpHAA",
    ),
    "google_oauth_client_secret": (
        "oauth client 4411.apps.googleusercontent.com / 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",
        "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",
    ),
    "google_refresh_token": (
        "stored grant 1//06sNdVU72lZ-o2_YH19dCqgn28s9Dp68GZN9Z3zLIbet6_UzH_7-3eLO6m4H5 for offline",
        "1//06sNdVU72lZ-o2_YH19dCqgn28s9Dp68GZN9Z3zLIbet6_UzH_7-3eLO6m4H5",
    ),
    # GitHub, GitLab
    "github_fine_grained_token": (
        "clone with github_pat_1164UT2UH53KJ7N1V3OE9Z_cmP6lcPI71dC3WPmETR4biPHnY4H59ikQ2lyrBIA3fytl"
        "wlqDFX0AsDluHE then push",
        "github_pat_1164UT2UH53KJ7N1V3OE9Z_cmP6lcPI71dC3WPmETR4biPHnY4H59ikQ2lyrBIA3fytlwlqDFX0As"
        "DluHE",
    ),
    "github_oauth_token": (
        "user session gho_NcWI9rQWOwjauQLKX783FSU8iIoELi9M4SGs",
        "gho_NcWI9rQWOwjauQLKX783FSU8iIoELi9M4SGs",
    ),
    "github_app_token": (
        "installation ghs_fAQk7iYY6LtGAyZjHZmya9gy4ed1wPw7X8bb expires in 1h",
        "ghs_fAQk7iYY6LtGAyZjHZmya9gy4ed1wPw7X8bb",
    ),
    "gitlab_token": (
        "git remote add origin https://gitlab.com/acme/app.git # glpat-x29iI-Vmy0s5bla5kzFp",
        "glpat-x29iI-Vmy0s5bla5kzFp",
    ),
    # Stripe, Slack
    "stripe_long_live_key": (
        "charge with sk_live_51gpbthgRJK72wuXDMOPTNc7zuMnMDBR4hRx3GR7qys80wdVTB4bsSvsU9XZ6htXAuL5b"
        "I9vmJdUhkNhhciHwMPPtbBLiwAyypX now",
        "sk_live_51gpbthgRJK72wuXDMOPTNc7zuMnMDBR4hRx3GR7qys80wdVTB4bsSvsU9XZ6htXAuL5bI9vmJdUhkNhh"
        "ciHwMPPtbBLiwAyypX",
    ),
    "stripe_restricted_key": (
        "refunds via rk_live_51ChHYHYr0g2noa9f4DPvAIY122Ql9bw2kwJRKYInhNTrJWKUnKsKrQJigYqg9BkgRdWwU"
        "ZlPOgGurL1es7ukqqeaA355XqA9ad",
        "rk_live_51ChHYHYr0g2noa9f4DPvAIY122Ql9bw2kwJRKYInhNTrJWKUnKsKrQJigYqg9BkgRdWwUZlPOgGurL1"
        "es7ukqqeaA355XqA9ad",
    ),
    "stripe_webhook_secret": (
        "verify events with whsec_AQoXilIbQT7IRJz4qYjobbrIEAq9ui8O",
        "whsec_AQoXilIbQT7IRJz4qYjobbrIEAq9ui8O",
    ),
    "slack_bot_token": (
        "post with xoxb-3829932157116-4941577188357-6LwfeXfZFXtqWQokuBGJvu65",
        "xoxb-3829932157116-4941577188357-6LwfeXfZFXtqWQokuBGJvu65",
    ),
    "slack_app_token": (
        "socket mode xapp-1-AFL9C6QV7UD-0370382653845-6bbeef965d4f0bd1529b8430691cc5324ca8916"
        "5999b4c60fdb505a45030b2b9",
        "xapp-1-AFL9C6QV7UD-0370382653845-6bbeef965d4f0bd1529b8430691cc5324ca89165999b4c60fdb505a4"
        "5030b2b9",
    ),
    # Hugging Face, npm, SendGrid, Twilio
    "huggingface_token": (
        "from_pretrained(repo, 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)",
        "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",
    ),
    "npm_token": (
        "publish using npm_qjIOrovjJXhrsKDOzzbJTvRAvgRX7F6R2O81",
        "npm_qjIOrovjJXhrsKDOzzbJTvRAvgRX7F6R2O81",
    ),
    "sendgrid_key": (
        "mail via 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",
        "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",
    ),
    "twilio_api_key": (
        "sms through SKe6b8c961d29f2afaab5258c360e76d46",
        "SKe6b8c961d29f2afaab5258c360e76d46",
    ),
    "twilio_auth_token": (
        "TWILIO_AUTH_TOKEN=8f4abc644441189548b4e55154df097b",
        "8f4abc644441189548b4e55154df097b",
    ),
    # Azure
    "azure_sas_signature": (
        "https://acme.blob.core.windows.net/logs?sv=2022-11-02&ss=b&srt=o&sp=r"
        "&se=2026-12-01T00:00:00Z&sig=44oXd66/aCfmUyW2ggp4AQ4YWpbYtLLQ0UFUwQcpgDA=",
        "44oXd66/aCfmUyW2ggp4AQ4YWpbYtLLQ0UFUwQcpgDA=",
    ),
    "entra_client_secret": (
        "app registration secret value 30f8Q~23zvEC~BVu226UAN49lBzokTuowA3y2dsI",
        "30f8Q~23zvEC~BVu226UAN49lBzokTuowA3y2dsI",
    ),
    # more cloud and developer platforms
    "digitalocean_token": (
        "doctl auth init -t "
        "dop_v1_9bc0fe8bf4347bec1a82eeb3891212e3cef04a403c2580123a49f7ae7c7ad1f7",
        "dop_v1_9bc0fe8bf4347bec1a82eeb3891212e3cef04a403c2580123a49f7ae7c7ad1f7",
    ),
    "docker_hub_token": (
        "docker login -u ops -p dckr_pat_x4yo8W9c-BXe7rLEOI3dTvpVBjv",
        "dckr_pat_x4yo8W9c-BXe7rLEOI3dTvpVBjv",
    ),
    "shopify_token": (
        "admin api 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",
        "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",
    ),
    "groq_key": (
        "llm 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",
        "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",
    ),
    "databricks_token": (
        "workspace dapi85e20b247f4a5f340c2fdab20873c795",
        "dapi85e20b247f4a5f340c2fdab20873c795",
    ),
    "vault_token": (
        "vault login "
        "hvs.NbdRw6mF8u9oiqaNs0Gc4LtWa4pmDP4iXJ44MG508LOvndABLZCPvmDXqQYAMWHS5FwMezMv3q4W",
        "hvs.NbdRw6mF8u9oiqaNs0Gc4LtWa4pmDP4iXJ44MG508LOvndABLZCPvmDXqQYAMWHS5FwMezMv3q4W",
    ),
    "url_password_special": (
        "amqp://worker:6ngLq!n1Do$injXe@mq.internal:5672/jobs",
        "6ngLq!n1Do$injXe",
    ),
}

# A secret in a secret-named JSON field, found by name and entropy rather than by shape.
NAMED_FIELD_SECRET = "q8Zr2LmX9vTnW4kPc7Ys1bQe"


LEAK_WINDOW = 10
"""A run of this many characters of a secret, found anywhere, is a leak."""


def leaks(secret: str, text: str) -> bool:
    """Whether any piece of ``secret`` (the whole of a short one) appears in ``text``."""
    window = min(LEAK_WINDOW, len(secret))
    return any(secret[i : i + window] in text for i in range(len(secret) - window + 1))


def leaked(text: str) -> list[str]:
    """The corpus secrets of which some piece appears in ``text``."""
    return [secret for secret in all_secrets() if leaks(secret, text)]


def all_secrets() -> list[str]:
    return [secret for _, secret in SECRETS.values()] + [NAMED_FIELD_SECRET]


def secret_text() -> str:
    """One text carrying every shaped secret."""
    return "\n".join(text for text, _ in SECRETS.values())
