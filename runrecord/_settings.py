"""Where runrecord finds its Temporal cluster, records database and local state."""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from temporalio.converter import PayloadCodec

DEFAULT_TASK_QUEUE = "runrecord-agents"
DEFAULT_NAMESPACE = "default"
CODEC_ENV = "RUNRECORD_PAYLOAD_CODEC"


class RunRecordError(Exception):
    """A user-facing error: the CLI prints its message as one line and exits non-zero."""


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str
    temporal_address: str | None
    namespace: str
    task_queue: str
    ui_url: str | None

    @classmethod
    def from_env(cls) -> Settings:
        home = Path(os.environ.get("RUNRECORD_HOME") or Path.home() / ".runrecord").expanduser()
        database_url = os.environ.get("RUNRECORD_DATABASE_URL") or (
            f"sqlite:///{home / 'records.sqlite3'}"
        )
        return cls(
            home=home,
            database_url=database_url,
            temporal_address=os.environ.get("TEMPORAL_ADDRESS") or None,
            namespace=os.environ.get("TEMPORAL_NAMESPACE") or DEFAULT_NAMESPACE,
            task_queue=os.environ.get("RUNRECORD_TASK_QUEUE") or DEFAULT_TASK_QUEUE,
            ui_url=os.environ.get("TEMPORAL_UI_URL") or None,
        )

    @property
    def journal_dir(self) -> Path:
        return self.home / "journal"

    @property
    def blobs(self) -> str:
        """Where redacted payload copies go, ``RUNRECORD_BLOBS``: a folder path, ``postgres``
        (the records database) or ``s3://bucket/prefix``. By default the records database
        when it is PostgreSQL, else the folder ``$RUNRECORD_HOME/blobs``."""
        configured = os.environ.get("RUNRECORD_BLOBS", "").strip()
        if configured:
            return configured
        if self.database_url.startswith("postgresql"):
            return "postgres"
        return str(self.home / "blobs")

    @property
    def policy_file(self) -> Path | None:
        """The approval policy: ``RUNRECORD_POLICY``, else ``$RUNRECORD_HOME/runrecord.toml``
        if it exists, else none (the built-in default)."""
        named = os.environ.get("RUNRECORD_POLICY")
        if named:
            return Path(named).expanduser()
        default = self.home / "runrecord.toml"
        return default if default.is_file() else None

    @property
    def payload_codec(self) -> PayloadCodec | None:
        """The payload codec of the agents' clients, ``RUNRECORD_PAYLOAD_CODEC=module:attr``:
        a ``PayloadCodec`` or a callable returning one; none if unset."""
        named = os.environ.get(CODEC_ENV)
        if not named:
            return None
        return load_codec(named)


def load_codec(named: str) -> PayloadCodec:
    """The ``PayloadCodec`` that ``module:attr`` names (an instance, or a factory of one)."""
    from temporalio.converter import PayloadCodec

    module_name, _, attr = named.partition(":")
    if not module_name or not attr:
        raise RunRecordError(f"{CODEC_ENV}: expected module:attr, got {named!r}")
    try:
        target = getattr(importlib.import_module(module_name), attr)
    except ImportError as err:
        raise RunRecordError(f"{CODEC_ENV}: cannot import {module_name!r}: {err}") from None
    except AttributeError:
        raise RunRecordError(f"{CODEC_ENV}: module {module_name!r} has no {attr!r}") from None
    if not isinstance(target, PayloadCodec) and callable(target):
        try:
            target = target()
        except Exception as err:
            raise RunRecordError(f"{CODEC_ENV}: {named} failed: {err}") from None
    if not isinstance(target, PayloadCodec):
        raise RunRecordError(
            f"{CODEC_ENV}: {named} is a {type(target).__name__}, not a temporalio PayloadCodec"
        )
    return target
