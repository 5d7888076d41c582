"""Secrets are redacted before anything is written: blob copies, error texts, journal lines.

Detection is detect-secrets' plugins (cloud and API keys, JWTs, private keys,
passwords in URLs, its keyword list), plus the documented token formats it has no
plugin for (or matches only in part), plus the patterns an operator configures. In
JSON, fields with secret names are redacted by name: password-style fields always,
other secret-named fields when their value looks random (high entropy); keys are
redacted like values. Texts are redacted whole, then cut: a secret straddling the
cut would otherwise slip through.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

from runrecord._lazy import defer_import

# detect-secrets imports `requests` (a tenth of a second at start-up) to check a secret it
# found against the service online, which runrecord never asks of it.
defer_import("requests")

from detect_secrets.plugins.artifactory import ArtifactoryDetector
from detect_secrets.plugins.aws import AWSKeyDetector
from detect_secrets.plugins.azure_storage_key import AzureStorageKeyDetector
from detect_secrets.plugins.base import BasePlugin
from detect_secrets.plugins.basic_auth import BasicAuthDetector
from detect_secrets.plugins.discord import DiscordBotTokenDetector
from detect_secrets.plugins.github_token import GitHubTokenDetector
from detect_secrets.plugins.gitlab_token import GitLabTokenDetector
from detect_secrets.plugins.keyword import DENYLIST as SECRET_KEYWORDS
from detect_secrets.plugins.mailchimp import MailchimpDetector
from detect_secrets.plugins.npm import NpmDetector
from detect_secrets.plugins.openai import OpenAIDetector
from detect_secrets.plugins.pypi_token import PypiTokenDetector
from detect_secrets.plugins.sendgrid import SendGridDetector
from detect_secrets.plugins.slack import SlackDetector
from detect_secrets.plugins.square_oauth import SquareOAuthDetector
from detect_secrets.plugins.stripe import StripeDetector
from detect_secrets.plugins.telegram_token import TelegramBotTokenDetector
from detect_secrets.plugins.twilio import TwilioKeyDetector

PATTERNS_ENV = "RUNRECORD_REDACT_PATTERNS"
"""Extra regular expressions to redact, one per line (group 1 if the pattern has one)."""

MARK = "[REDACTED]"

# detect-secrets' value detectors, applied through their patterns so a match is
# replaced where it stands. Left out on purpose: public IP addresses (not secrets)
# and the quoted high-entropy scanners, which would eat the sha256 hashes that
# make a record verifiable (entropy is used below, for secret-named fields only).
# Its keyword list drives the `password=`-style rule below.
_PLUGINS: tuple[BasePlugin, ...] = (
    ArtifactoryDetector(),
    AWSKeyDetector(),
    AzureStorageKeyDetector(),
    BasicAuthDetector(),
    DiscordBotTokenDetector(),
    GitHubTokenDetector(),
    GitLabTokenDetector(),
    MailchimpDetector(),
    NpmDetector(),
    OpenAIDetector(),
    PypiTokenDetector(),
    SendGridDetector(),
    SlackDetector(),
    SquareOAuthDetector(),
    StripeDetector(),
    TelegramBotTokenDetector(),
    TwilioKeyDetector(),
)
_PLUGIN_PATTERNS: tuple[re.Pattern[str], ...] = tuple(
    pattern
    for plugin in _PLUGINS
    for pattern in getattr(plugin, "denylist", ())
    if isinstance(pattern, re.Pattern)
)
# Two of detect-secrets' patterns scan to the end of the text from every place they could
# start (``//.+/:_authToken=``, ``sk-[...]*...T3BlbkFJ``): quadratic time on a long hostile
# value. Each needs a literal that is cheap to look for first; without it they cannot match.
_PLUGIN_NEEDS: dict[re.Pattern[str], str] = {
    pattern: literal
    for pattern in _PLUGIN_PATTERNS
    for literal in (":_authToken=", "T3BlbkFJ")
    if literal in pattern.pattern
}

_KEYWORDS = "|".join(SECRET_KEYWORDS)
# What detect-secrets has no plugin for. Each pattern redacts group 1, or the whole match.
# Distinctive prefixes need no word boundary before them: in escaped text (``\\n`` in
# JSON, a log line) a token follows a letter. A run of letters that a match may start
# anywhere in is bounded ({0,31}, {1,512}): unbounded, a long hostile value made of
# repeated starts ("eyJ-eyJ-…", "api_key_api_key_…") cost quadratic time.
_EXTRA = tuple(
    re.compile(p)
    for p in (
        # the whole PEM block (detect-secrets flags only its BEGIN line)
        r"-----BEGIN[A-Z ]*PRIVATE KEY[A-Z ]*-----[\s\S]*?"
        r"(?:-----END[A-Z ]*PRIVATE KEY[A-Z ]*-----|$)",
        # a JWT, with its signature where it has one (in place of detect-secrets' pattern,
        # which has no bound)
        r"eyJ[A-Za-z0-9_\-=]{1,512}\.[A-Za-z0-9_\-=]+(?:\.[A-Za-z0-9_\-+/=]*)?",
        r"sk-ant-[A-Za-z0-9_\-]{20,}",  # Anthropic
        r"sk-(?:proj|svcacct|admin|None)-[A-Za-z0-9_\-]{20,}",  # OpenAI project/service keys
        r"\bsk-[A-Za-z0-9]{32,}\b",  # OpenAI legacy keys without the T3BlbkFJ marker
        r"AIza[0-9A-Za-z_\-]{35}",  # GCP API key
        r"\bya29\.[0-9A-Za-z_\-]{20,}",  # GCP OAuth access token
        r"GOCSPX-[0-9A-Za-z_\-]{20,}",  # Google OAuth client secret
        r"1//0[0-9A-Za-z_\-]{40,}",  # Google OAuth refresh token
        r"github_pat_[A-Za-z0-9_]{30,}",  # GitHub fine-grained token
        r"gh[pousr]_[A-Za-z0-9_]{30,}",  # GitHub classic tokens of any length
        r"(?:sk|rk)_(?:live|test)_[0-9A-Za-z]{16,}",  # Stripe keys (detect-secrets stops at 24)
        r"whsec_[0-9A-Za-z+/=]{24,}",  # Stripe webhook signing secret
        r"(?:xox[abposre]|xoxe\.xox[bp]|xapp)-[0-9A-Za-z\-]{10,}",  # Slack (any case)
        r"hf_[A-Za-z0-9]{30,}",  # Hugging Face
        r"npm_[A-Za-z0-9]{36}\b",  # npm
        r"do[opr]_v1_[a-f0-9]{64}",  # DigitalOcean
        r"dckr_pat_[A-Za-z0-9_\-]{20,}",  # Docker Hub
        r"shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}",  # Shopify
        r"gsk_[A-Za-z0-9]{48,}",  # Groq
        r"xai-[A-Za-z0-9]{60,}",  # xAI
        r"pplx-[A-Za-z0-9]{40,}",  # Perplexity
        r"r8_[A-Za-z0-9]{37}",  # Replicate
        r"\bdapi[a-f0-9]{32}(?:-\d)?",  # Databricks
        r"\bATATT3[A-Za-z0-9_\-=]{50,}",  # Atlassian API token
        r"sntr[ysu]_[A-Za-z0-9+/=_]{40,}",  # Sentry
        r"NRAK-[A-Z0-9]{27}",  # New Relic
        r"glsa_[A-Za-z0-9]{32}_[a-f0-9]{8}",  # Grafana service account
        r"lin_api_[A-Za-z0-9]{40}",  # Linear
        r"PMAK-[a-f0-9]{24}-[a-f0-9]{34}",  # Postman
        r"\bdp\.(?:pt|st|sa|ct|scim|audit)\.[A-Za-z0-9]{40,}",  # Doppler
        r"\bhv[sbr]\.[A-Za-z0-9_\-]{24,}",  # HashiCorp Vault
        r"\bLTAI[A-Za-z0-9]{20}",  # Alibaba Cloud access key id
        r"\bEAAA[A-Za-z0-9_\-]{60}",  # Square access token
        r"(?<![\w~.\-])[A-Za-z0-9_~.]{3}\dQ~[A-Za-z0-9_~.\-]{31,34}",  # Microsoft Entra secret
        r"(?i)[?&]sig=([A-Za-z0-9%+/=]{16,})",  # Azure shared access signature
        # AWS secret access key where the context names it (CLI arguments, XML, env lists)
        r"(?i)secret[_\- ]?access[_\- ]?key[\"'>]?[\s:=>\"']+"
        r"([A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])",
        # the password of a URL, even with characters detect-secrets' pattern leaves out
        r"\b[A-Za-z][A-Za-z0-9+.\-]{0,31}://[^\s:/?#@\[\]]+:([^\s@/?#]+)@",
        r"(?i)\bbearer\s+([A-Za-z0-9\-._~+/]{8,}=*)",
        r"(?i)(?:SharedAccessKey|AccountKey|client_secret)\s*=\s*([^;&\s\"']+)",  # Azure strings
        # password=..., api_key: ... in free text (detect-secrets' keyword list)
        rf"(?i)(?:{_KEYWORDS})[A-Za-z0-9_\-]{{0,40}}[\"']?\s*(?:=|:=|=>|:)\s*[\"']?([^\s\"',;&}}]+)",
        # (no [a-z_]* before "token": only group 1 is replaced, and that prefix made a long
        # run of letters cost quadratic time)
        r"(?i)token[\"']?\s*[=:]\s*[\"']?([A-Za-z0-9\-._~+/]{12,}=*)",
    )
)

# JSON field names (as snake_case words) whose string values are secrets by name.
_ALWAYS_FIELD = re.compile(
    r"(^|_)(pass|password|passwd|passphrase|pwd|private_key|contrasena|contraseña)($|_)"
)
_SECRET_FIELD = re.compile(
    rf"{_KEYWORDS}|(^|_)(token|auth|authorization|credentials?|bearer|signature|cookie"
    r"|session_id|(access|secret|signing|encryption|master)_key)($|_)"
)
_CAMEL = re.compile(r"([a-z0-9])([A-Z])")
_PAIR_NAMES = ("name", "Name", "key", "Key")
_TEXT_CACHE = 4096
_SHORT = 200
"""Texts up to this long (keys of JSON objects among them) are remembered once redacted,
``_TEXT_CACHE`` of them at most."""


def shannon_entropy(value: str) -> float:
    """Bits per character: random keys score high, words and ids low."""
    if not value:
        return 0.0
    counts: dict[str, int] = {}
    for ch in value:
        counts[ch] = counts.get(ch, 0) + 1
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def _looks_random(value: str) -> bool:
    return len(value) >= 8 and " " not in value.strip() and shannon_entropy(value) >= 3.0


class Redactor:
    """Replaces secrets with ``[REDACTED]`` in text and in JSON-like values."""

    def __init__(self, patterns: Iterable[str] = ()) -> None:
        compiled = []
        for pattern in patterns:
            if not pattern.strip():
                continue
            try:
                compiled.append(re.compile(pattern))
            except re.error as err:
                raise ValueError(f"invalid redaction pattern {pattern!r}: {err}") from None
        self.patterns = tuple(compiled)
        self._texts: dict[str, str] = {}

    @classmethod
    def from_env(cls) -> Redactor:
        return cls((os.environ.get(PATTERNS_ENV) or "").splitlines())

    def text(self, text: str, limit: int | None = None) -> str:
        """``text`` with every secret found in it replaced, then cut to ``limit`` characters."""
        if not text:
            return text
        short = len(text) <= _SHORT
        redacted = self._texts.get(text) if short else None
        if redacted is None:
            redacted = self._scan(text)
            if short:
                # Names, ids and statuses recur in every run: each is scanned once.
                if len(self._texts) >= _TEXT_CACHE:
                    self._texts.clear()
                self._texts[text] = redacted
        text = redacted
        if limit is not None and len(text) > limit:
            text = text[: max(limit - 3, 0)] + "..."
        return text

    def _scan(self, text: str) -> str:
        for pattern in (*_EXTRA, *self.patterns, *_PLUGIN_PATTERNS):
            needs = _PLUGIN_NEEDS.get(pattern)
            if needs is None or needs in text:
                text = pattern.sub(_replace, text)
        return text

    def value(self, value: Any, field: str | None = None) -> Any:
        """A copy of a JSON-like value with secrets redacted (by content and by field name)."""
        if isinstance(value, str):
            if field is not None and value and _secret_by_name(field, value):
                return MARK
            return self.text(value)
        if isinstance(value, Mapping):
            return self._mapping(value)
        if isinstance(value, list | tuple):
            return [self.value(v, field) for v in value]
        return value

    def _mapping(self, value: Mapping[Any, Any]) -> dict[Any, Any]:
        """Keys are redacted like texts; a key that held a secret becomes ``[REDACTED]``,
        numbered (``[REDACTED]#2``) where two would collide, so no entry is lost."""
        keys = {k: self.text(k) if isinstance(k, str) else k for k in value}
        kept = {k for k, redacted in keys.items() if k == redacted}
        # {"name": "AWS_SECRET_ACCESS_KEY", "value": "..."}: an environment list names its value.
        named = next((value[k] for k in _PAIR_NAMES if isinstance(value.get(k), str)), None)
        out: dict[Any, Any] = {}
        for k, v in value.items():
            key = keys[k]
            if key != k:
                base, n = key, 1
                while key in out or key in kept:
                    n += 1
                    key = f"{base}#{n}"
            field = named if named is not None and str(k).lower() == "value" else str(k)
            out[key] = self.value(v, field)
        return out


def _replace(match: re.Match[str]) -> str:
    """Redact the pattern's secret group, else the whole match.

    In detect-secrets' patterns a group may be a mere prefix (GitHub's ``ghp``), so
    there only a long group counts as the secret; in ours group 1 is the secret.
    """
    groups = [i for i in range(1, match.re.groups + 1) if match.group(i)]
    if not groups:
        return MARK
    best = max(groups, key=lambda i: len(match.group(i)))
    if match.re in _PLUGIN_PATTERNS and len(match.group(best)) < 8:
        return MARK
    start, end = match.span(best)
    offset = match.start()
    whole = match.group(0)
    return whole[: start - offset] + MARK + whole[end - offset :]


def _secret_by_name(field: str, value: str) -> bool:
    name = _CAMEL.sub(r"\1_\2", field).replace("-", "_").lower()
    if _ALWAYS_FIELD.search(name):
        return True
    return bool(_SECRET_FIELD.search(name)) and _looks_random(value)


@lru_cache(maxsize=1)
def default_redactor() -> Redactor:
    """The process's redactor: built-in detectors plus ``RUNRECORD_REDACT_PATTERNS``."""
    return Redactor.from_env()


class RedactingFilter(logging.Filter):
    """Redacts log records (message and traceback text) before any handler sees them.

    Temporal's SDK logs a failed activity with its exception, and exception texts
    carry whatever the tool saw; the filter keeps those secrets out of the logs.
    """

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        redactor = self.redactor or default_redactor()
        if getattr(record, "_runrecord_redacted", False):
            return True
        record.msg = redactor.text(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redactor.text(record.exc_text)
        if record.stack_info:
            record.stack_info = redactor.text(record.stack_info)
        record._runrecord_redacted = True
        return True


LOGGERS = (
    "temporalio.activity",
    "temporalio.workflow",
    "temporalio.worker._activity",
    "temporalio.worker._workflow",
    "temporalio.worker._workflow_instance",
    "runrecord",
)


def redact_logs(names: Iterable[str] = LOGGERS) -> None:
    """Install the redacting filter on the loggers that carry payload and error texts."""
    for name in names:
        target = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in target.filters):
            target.addFilter(RedactingFilter())
