"""The mirror: projects agent runs' Temporal history, and the activity journal, into the records.

Temporal history is the source of truth; the records database is its projection,
rebuildable at any time with ``sync_run``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, select
from temporalio.client import Client, WorkflowExecution, WorkflowExecutionStatus

from runrecord.recorder._blobs import BlobStore
from runrecord.recorder._projection import RunProjection
from runrecord.recorder._store import (
    apply_journal,
    journal_offset,
    save_projection,
    set_journal_offset,
)
from runrecord.recorder._tables import RunRow
from runrecord.worker._interceptor import AGENT_ATTR
from runrecord.worker._journal import journal_files, read_from

log = logging.getLogger("runrecord.mirror")


class Mirror:
    """Follows agent runs on one namespace and keeps their records current."""

    def __init__(
        self,
        client: Client,
        engine: Engine,
        *,
        journal_dir: Path | None = None,
        blobs: BlobStore | None = None,
        poll_interval: float = 1.0,
        live_interval: float = 5.0,
    ) -> None:
        self.client = client
        self.engine = engine
        self.journal_dir = journal_dir
        self.blobs = blobs
        self.poll_interval = poll_interval
        # A run still going is re-synced at most this often; a closed one at once.
        self.live_interval = live_interval
        self._live_synced: dict[str, float] = {}
        self.errors: list[str] = []

    async def sync_run(self, workflow_id: str) -> RunProjection:
        """Project one run's full history (idempotent) and return the projection."""
        handle = self.client.get_workflow_handle(workflow_id)
        history = await handle.fetch_history()
        projection = RunProjection(workflow_id, self.client.namespace)
        projection.apply_all(list(history.events))
        await asyncio.to_thread(self._save, projection)
        return projection

    def _save(self, projection: RunProjection) -> None:
        # Copies first: a run whose rows are saved is not synced again until it grows.
        if self.blobs is not None:
            for sha, (data, media_type) in projection.bodies.items():
                self.blobs.keep(sha, data, media_type)
        with self.engine.begin() as conn:
            save_projection(conn, projection)

    async def sync_tree(self, workflow_id: str) -> list[str]:
        """Project a run and every sub-agent run under it; returns their ids, root first."""
        order = [workflow_id]
        i = 0
        while i < len(order):
            projection = await self.sync_run(order[i])
            order.extend(c for c in projection.child_run_ids if c not in order)
            i += 1
        return order

    def drain_journal(self) -> int:
        """Apply new journal lines; each file's cursor moves in the same transaction."""
        if self.journal_dir is None:
            return 0
        applied = 0
        for path in journal_files(self.journal_dir):
            with self.engine.begin() as conn:
                offset = journal_offset(conn, path.name)
                if path.stat().st_size <= offset:
                    continue
                lines = list(read_from(path, offset))
                if not lines:
                    continue
                applied += apply_journal(conn, [entry for _, entry in lines])
                set_journal_offset(conn, path.name, lines[-1][0])
        return applied

    async def _changed_runs(self, since: datetime) -> list[WorkflowExecution]:
        stamp = since.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        query = f"ExecutionStatus = 'Running' OR CloseTime > '{stamp}'"
        found = []
        async for execution in self.client.list_workflows(query):
            if execution.typed_search_attributes.get(AGENT_ATTR) is not None:
                found.append(execution)
        return found

    def _known_event_ids(self, run_ids: Iterable[str]) -> dict[str, int]:
        ids = list(run_ids)
        if not ids:
            return {}
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(RunRow.run_id, RunRow.last_event_id).where(RunRow.run_id.in_(ids))
            )
            return {run_id: int(last) for run_id, last in rows}

    async def poll_once(self, since: datetime) -> int:
        """Sync every agent run that has grown since ``since``; returns how many."""
        await asyncio.to_thread(self.drain_journal)
        executions = await self._changed_runs(since)
        known = await asyncio.to_thread(self._known_event_ids, (e.id for e in executions))
        synced = 0
        now = time.monotonic()
        for execution in executions:
            if known.get(execution.id, -1) >= (execution.history_length or 0) > 0:
                continue
            running = execution.status == WorkflowExecutionStatus.RUNNING
            if running and now - self._live_synced.get(execution.id, -1e9) < self.live_interval:
                continue
            await self.sync_run(execution.id)
            if running:
                self._live_synced[execution.id] = now
            else:
                self._live_synced.pop(execution.id, None)
            synced += 1
        listed = {e.id for e in executions}
        self._live_synced = {k: v for k, v in self._live_synced.items() if k in listed}
        return synced

    async def run(self, stop: asyncio.Event) -> None:
        """Follow runs until ``stop`` is set; errors are logged and retried, never fatal."""
        since = datetime.now(UTC) - timedelta(hours=1)
        backoff = self.poll_interval
        while not stop.is_set():
            started = datetime.now(UTC)
            try:
                await self.poll_once(since)
                since = started - timedelta(seconds=30)
                backoff = self.poll_interval
            except Exception as err:  # the database or Temporal may be down: keep going
                message = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
                self.errors = [*self.errors[-99:], message]
                log.warning("mirror: %s (retrying in %.0fs)", message, backoff)
                backoff = min(backoff * 2, 30.0)
            try:
                await asyncio.wait_for(stop.wait(), timeout=backoff)
            except TimeoutError:
                pass
        await asyncio.to_thread(self.drain_journal)
