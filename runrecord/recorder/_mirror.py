"""The mirror: follows agent runs' Temporal history, and the activity journal, into the records.

Temporal history is the source of truth; the records database is its projection. The
mirror finds runs through visibility (and nudges from a worker in the same process),
follows each Temporal run's history with long polls, folds every page into the run's
``RunChain`` and writes the change set with the run's cursors in one transaction.
Killed anywhere, it starts again from history: the upserts and the cursor check make
a second write of the same events a no-op. Several mirrors split the runs between
them by heartbeats (``_membership``); ``verify`` compares the records with history
(``_verify``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import threading
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, select
from temporalio.api.common.v1 import WorkflowExecution as WorkflowExecutionProto
from temporalio.api.workflow.v1 import WorkflowExecutionInfo
from temporalio.api.workflowservice.v1 import (
    DescribeWorkflowExecutionRequest,
    GetWorkflowExecutionHistoryRequest,
    GetWorkflowExecutionHistoryResponse,
)
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from runrecord._settings import RunRecordError
from runrecord.recorder._attest import attest_written, reason_to_attest
from runrecord.recorder._blobs import BlobStore, BlobStoreError, DatabaseBlobStore
from runrecord.recorder._database import is_outage, listen_url, refusal
from runrecord.recorder._decoding import decode_events
from runrecord.recorder._membership import Followed, Membership, Quarantined, heartbeat, leave
from runrecord.recorder._operations import ActivityWatch
from runrecord.recorder._projection import Body, RunChain, RunProjection
from runrecord.recorder._shipper import NOTIFY_CHANNEL, ship_journal
from runrecord.recorder._store import (
    Rows,
    lock_runs,
    run_rows,
    stored_cursors,
    upsert,
    write_rows,
)
from runrecord.recorder._tables import ActivityOperationRow, RunRow
from runrecord.recorder._verify import differences, missing_from_records
from runrecord.recorder._visibility import OPEN_QUERY, is_agent_run, is_open, list_executions
from runrecord.records import FinalStatus
from runrecord.worker._nudge import listen

log = logging.getLogger("runrecord.mirror")

PAGE_SIZE = 0  # the server default
LONG_POLL = timedelta(seconds=70)
_DONE_KEPT = 100_000
WRITE_GATHER = (0.0, 0.02)
"""Seconds between one transaction's end and the next one's start while changes keep coming,
at least and at most: as long as the last transaction took, within these bounds. A change
after a quiet spell is written at once; under load, what arrives during a write and the gap
after it is one transaction, so a slow database gets fewer, larger transactions."""
QUARANTINE_MAX_WAIT = 30.0  # seconds between tries of a run the records refuse, at most
COPIES_HELD_MAX = 256 * 1024 * 1024  # bytes of payload copies held while the blob store is out

LOOKUP_BATCH = 50  # workflow ids per visibility query in a rebuild


@dataclass
class _Change:
    """A change set taken from a chain, written in a worker thread."""

    workflow_id: str
    chain: RunChain
    marks: dict[str, tuple[int, set[str]]]
    rows: Rows
    cursors: dict[str, int]
    bodies: dict[str, Body]
    everything: bool
    last_event_time: dict[str, datetime | None]
    attest: str | None = None
    """Why the run is attested once written (``_attest.reason_to_attest``), or None."""


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
        mirror_id: str | None = None,
    ) -> None:
        self.client = client
        self.engine = engine
        self.namespace = client.namespace
        self.journal_dir = journal_dir
        self.blobs = blobs
        self.poll_interval = poll_interval
        self.mirror_id = mirror_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.errors: list[str] = []
        self.membership = Membership()
        self.followed: dict[tuple[str, str], Followed] = {}
        self._chains: dict[str, RunChain] = {}
        self._full_write: set[str] = set()
        self._unsaved: set[str] = set()
        self._writer_wake = asyncio.Event()
        self._tasks: dict[tuple[str, str], asyncio.Task[None]] = {}
        # Temporal runs followed to their end (bounded: oldest forgotten first).
        self._done: dict[tuple[str, str], None] = {}
        self._started_at = datetime.now(UTC)
        self.quarantined: dict[str, Quarantined] = {}
        """Runs whose rows the records database refuses, by workflow id."""
        self.runs_written: set[str] = set()
        """Runs this mirror has written rows for lately (forgotten past 100,000)."""
        self.copies_held: dict[str, Body] = {}
        """Payload copies the blob store could not take yet, retried with every write."""
        self.copies_dropped = 0
        """Copies given up when too many were held: `mirror rebuild` writes them again."""
        self.blob_store_error: str | None = None
        self._copies_lock = threading.Lock()

    # --- one run, start to end (tests, demo, rebuild)

    async def sync_run(self, workflow_id: str) -> RunChain:
        """Project every Temporal run of a workflow id from its full history; writes everything."""
        chain = await self.project(workflow_id)
        _, refused = await self._write([self._take(chain, everything=True)])
        if refused:
            raise RunRecordError(f"the records refused run {workflow_id}: {refused[workflow_id]}")
        return chain

    async def project(
        self, workflow_id: str, temporal_run_ids: Sequence[str] | None = None
    ) -> RunChain:
        """A fresh chain from history alone (Temporal runs whose history is gone are absent).

        ``temporal_run_ids``: the workflow id's Temporal runs, if already looked up."""
        chain = RunChain(workflow_id, self.namespace)
        pending = list(
            await self.temporal_run_ids(workflow_id)
            if temporal_run_ids is None
            else temporal_run_ids
        )
        while pending:
            temporal_run_id = pending.pop(0)
            if not await self._fold_history(workflow_id, chain.fold(temporal_run_id)):
                del chain.folds[temporal_run_id]
            for linked in _linked(chain):
                if linked not in chain.folds and linked not in pending:
                    pending.append(linked)
        return chain

    async def _fold_history(self, workflow_id: str, fold: RunProjection) -> bool:
        """Fold a Temporal run's whole history as it stands; False if Temporal no longer has it."""
        token = b""
        while True:
            try:
                page = await self.page(workflow_id, fold.temporal_run_id or "", token, wait=False)
            except RPCError as err:
                if err.status == RPCStatusCode.NOT_FOUND:
                    return False
                raise
            fold.apply_all(page.history.events)
            token = page.next_page_token
            if not token:
                return True

    async def sync_tree(self, workflow_id: str) -> list[str]:
        """Project a run and every sub-agent run under it; returns their ids, root first."""
        order = [workflow_id]
        i = 0
        while i < len(order):
            chain = await self.sync_run(order[i])
            order.extend(c for c in chain.record(calls=False).child_run_ids if c not in order)
            i += 1
        return order

    async def temporal_run_ids(self, workflow_id: str) -> list[str]:
        """The Temporal runs of a workflow id that Temporal still knows, oldest first."""
        return (await self.temporal_run_ids_of([workflow_id]))[workflow_id]

    async def temporal_run_ids_of(
        self, workflow_ids: Sequence[str], *, describe_listed: bool = True
    ) -> dict[str, list[str]]:
        """``temporal_run_ids`` of several workflow ids: visibility is asked once for all of
        them (a query per id would be most of a rebuild's time, and is rate limited).

        Without ``describe_listed``, only ids visibility does not list are described (a
        rebuild: a run started since visibility answered is the live mirror's to follow)."""
        found: dict[str, list[str]] = {w: [] for w in workflow_ids}
        if not found:
            return found
        quoted = [w.replace("\\", "\\\\").replace("'", "\\'") for w in found]
        query = (
            f"WorkflowId = '{quoted[0]}'"
            if len(quoted) == 1
            else "WorkflowId IN (" + ", ".join(f"'{w}'" for w in quoted) + ")"
        )
        try:
            async for info in list_executions(self.client, query):
                runs = found.get(info.execution.workflow_id)
                if runs is not None and info.execution.run_id not in runs:
                    runs.append(info.execution.run_id)
        except RPCError as err:
            # A server without visibility (the time-skipping test server): the latest
            # run and the runs its history links to are all there is to follow.
            if err.status != RPCStatusCode.UNIMPLEMENTED:
                raise
        for runs in found.values():
            runs.reverse()  # visibility lists newest first
        # Visibility may not list a run that has just started yet: ask for the latest.
        unknown = [w for w, runs in found.items() if describe_listed or not runs]
        latest = await asyncio.gather(*(self._latest_run(w) for w in unknown))
        for workflow_id, run_id in zip(unknown, latest, strict=True):
            if run_id and run_id not in found[workflow_id]:
                found[workflow_id].append(run_id)
        return found

    async def _latest_run(self, workflow_id: str) -> str | None:
        try:
            described = await self.client.workflow_service.describe_workflow_execution(
                DescribeWorkflowExecutionRequest(
                    namespace=self.namespace,
                    execution=WorkflowExecutionProto(workflow_id=workflow_id),
                ),
                retry=True,
            )
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            return None
        return described.workflow_execution_info.execution.run_id or None

    async def page(
        self, workflow_id: str, temporal_run_id: str, token: bytes, *, wait: bool
    ) -> GetWorkflowExecutionHistoryResponse:
        request = GetWorkflowExecutionHistoryRequest(
            namespace=self.namespace,
            execution=WorkflowExecutionProto(workflow_id=workflow_id, run_id=temporal_run_id),
            next_page_token=token,
            wait_new_event=wait,
            maximum_page_size=PAGE_SIZE,
        )
        response = await self.client.workflow_service.get_workflow_execution_history(
            request, retry=True, timeout=LONG_POLL if wait else None
        )
        # Hashes and redacted copies are of the payload the agent saw, not the ciphertext.
        await decode_events(response.history.events, self.client.data_converter.payload_codec)
        return response

    # --- writing

    def _take(self, chain: RunChain, *, everything: bool) -> _Change:
        """Take the chain's change set (in the event loop, so no fold runs meanwhile)."""
        everything = everything or chain.run_id in self._full_write
        bodies: dict[str, Body] = {}
        for fold in chain.folds.values():
            bodies.update(fold.bodies)
        folds = chain.ordered()
        rows = run_rows(chain, everything=everything)
        reason = reason_to_attest(rows)
        if reason is not None and not everything:
            # Attested rows are written whole from history first.
            everything, rows = True, run_rows(chain, everything=True)
        change = _Change(
            workflow_id=chain.run_id,
            chain=chain,
            marks=chain.taken(),
            rows=rows,
            cursors={f.temporal_run_id or "": f.last_event_id for f in folds},
            bodies=bodies,
            everything=everything,
            last_event_time={f.temporal_run_id or "": f.last_event_time for f in folds},
            attest=reason,
        )
        return change

    async def _write(self, changes: list[_Change]) -> tuple[set[str], dict[str, str]]:
        """Write change sets; returns the runs written, and the runs whose rows the database
        refused with its one-line error (the others are written all the same)."""
        try:
            wrote, refused = await asyncio.to_thread(self._write_changes, changes)
        except BaseException:
            # The change sets are gone from their chains: write those runs whole next time.
            self._full_write.update(c.workflow_id for c in changes)
            raise
        for change in changes:
            if change.workflow_id in refused:
                self._full_write.add(change.workflow_id)
                continue
            change.chain.written(change.marks)
            if change.everything:
                self._full_write.discard(change.workflow_id)
            for temporal_run_id, last in change.cursors.items():
                state = self.followed.get((change.workflow_id, temporal_run_id))
                if state is not None and last > state.last_event_id:
                    state.last_event_id = last
                    state.last_event_time = change.last_event_time.get(temporal_run_id)
        if len(self.runs_written) > _DONE_KEPT:
            self.runs_written.clear()
        self.runs_written.update(wrote)
        return wrote, refused

    def _write_changes(self, changes: list[_Change]) -> tuple[set[str], dict[str, str]]:
        # Copies first: rows that point at a copy are written once it exists, or once the
        # mirror holds it for a blob store that is out (the records never wait for it). A
        # store in the records database keeps them in the rows' own transaction.
        with_rows = isinstance(self.blobs, DatabaseBlobStore) and self.blobs.shares_database(
            self.engine
        )
        if not with_rows:
            self.keep_copies({sha: body for c in changes for sha, body in c.bodies.items()})
        try:
            with self.engine.begin() as conn:
                if with_rows:
                    self._keep_copies_in(conn, changes)
                return write_changes(conn, self.namespace, changes), {}
        except Exception as err:
            if is_outage(err):
                raise
            if len(changes) == 1:
                return set(), {changes[0].workflow_id: refusal(err)}
        # The database refused some run's rows: write each run in a savepoint of its own,
        # so that one run's refusal costs the others nothing.
        wrote: set[str] = set()
        refused: dict[str, str] = {}
        with self.engine.begin() as conn:
            for change in sorted(changes, key=lambda c: c.workflow_id):
                try:
                    with conn.begin_nested():
                        if with_rows:
                            self._keep_copies_in(conn, [change])
                        wrote |= write_changes(conn, self.namespace, [change])
                except Exception as err:
                    if is_outage(err):
                        raise
                    refused[change.workflow_id] = refusal(err)
        return wrote, refused

    def _keep_copies_in(self, conn: Connection, changes: list[_Change]) -> None:
        """The changes' payload copies, in ``conn``'s transaction (a blob store in the records
        database): one transaction a write, not two."""
        assert isinstance(self.blobs, DatabaseBlobStore)
        bodies = {sha: body for change in changes for sha, body in change.bodies.items()}
        if bodies:
            with self.blobs.within(conn):
                self.blobs.keep_many(bodies)

    def keep_copies(self, bodies: dict[str, Body]) -> None:
        """Hand payload copies to the blob store, with any it could not take before.

        A blob store in the records database fails with the rows and is retried with them.
        Another store (a folder, S3) that fails does not hold the records back: the copies
        are held in memory and retried with every write; past ``COPIES_HELD_MAX`` bytes the
        oldest are dropped, counted and logged (`runrecord mirror rebuild` writes them again
        while Temporal keeps the history)."""
        if self.blobs is None:
            return
        with self._copies_lock:
            pending = {**self.copies_held, **bodies}
            if not pending:
                return
            try:
                self.blobs.keep_many(pending)
            except BlobStoreError as err:
                if str(err) != self.blob_store_error:
                    log.warning(
                        "mirror: %s; holding payload copies and retrying, records go on", err
                    )
                self.blob_store_error = str(err)
                self.copies_held = pending
                size = sum(len(data) for data, _ in pending.values())
                dropped = 0
                while size > COPIES_HELD_MAX and self.copies_held:
                    sha = next(iter(self.copies_held))
                    size -= len(self.copies_held.pop(sha)[0])
                    dropped += 1
                if dropped:
                    self.copies_dropped += dropped
                    log.warning(
                        "mirror: %d payload copies dropped while the blob store is out "
                        "(%d in all); `runrecord mirror rebuild` writes them again",
                        dropped,
                        self.copies_dropped,
                    )
                return
            if self.blob_store_error is not None:
                log.warning(
                    "mirror: blob store back; kept %d payload copies held meanwhile",
                    len(self.copies_held),
                )
            self.copies_held = {}
            self.blob_store_error = None

    def _changed(self, workflow_id: str) -> None:
        self._unsaved.add(workflow_id)
        self._writer_wake.set()

    async def _writer(self, stop: asyncio.Event) -> None:
        """Write every run with unsaved changes, all in one transaction, as often as it can.

        A run the database refuses is quarantined: retried alone, with backoff, so it
        never holds the others back."""
        loop = asyncio.get_running_loop()
        backoff = self.poll_interval
        last_write = gap = 0.0
        while True:
            if not self._unsaved:
                if stop.is_set():
                    return
                self._writer_wake.clear()
                waits = [
                    asyncio.ensure_future(stop.wait()),
                    asyncio.ensure_future(self._writer_wake.wait()),
                ]
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                for w in waits:
                    w.cancel()
                continue
            # Under load, let changes gather a moment: one transaction for many runs' pages
            # costs far less than one per page. After a quiet spell, write at once.
            wait = last_write + gap - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            began = loop.time()
            ids, self._unsaved = sorted(self._unsaved), set()
            now = loop.time()
            # A quarantined run not yet due waits for its timer, which marks it unsaved again.
            batches = [[w for w in ids if w not in self.quarantined]]
            batches += [[w] for w in ids if w in self.quarantined and self.quarantined[w].due(now)]
            done: set[str] = set()
            try:
                for batch in batches:
                    changes = [
                        self._take(self._chains[w], everything=False)
                        for w in batch
                        if w in self._chains
                    ]
                    refused: dict[str, str] = {}
                    if changes:
                        _, refused = await self._write(changes)
                    self._quarantine(refused)
                    self._release(w for w in batch if w not in refused)
                    done.update(batch)
                backoff = self.poll_interval
                last_write = loop.time()
                gap = min(max(last_write - began, WRITE_GATHER[0]), WRITE_GATHER[1])
            except Exception as err:  # the database may be down: fold on, write later
                self._error(err)
                self._unsaved.update(w for batch in batches for w in batch if w not in done)
                if stop.is_set():
                    return
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    def _quarantine(self, refused: dict[str, str]) -> None:
        """Set refused runs aside, each with its error, and retry each later on its own."""
        loop = asyncio.get_running_loop()
        for workflow_id, error in refused.items():
            held = self.quarantined.get(workflow_id)
            if held is None or held.error != error:
                log.warning(
                    "mirror: run %s quarantined, refused by the records: %s", workflow_id, error
                )
            if held is None:
                held = self.quarantined[workflow_id] = Quarantined(workflow_id, error)
            else:
                held.error = error
                held.attempts += 1
                if held.retry is not None:
                    held.retry.cancel()
            wait = min(self.poll_interval * 2 ** (held.attempts - 1), QUARANTINE_MAX_WAIT)
            held.retry_at = loop.time() + wait
            held.retry = loop.call_later(wait, self._changed, workflow_id)

    def _release(self, workflow_ids: Iterable[str]) -> None:
        for workflow_id in workflow_ids:
            held = self.quarantined.pop(workflow_id, None)
            if held is not None:
                if held.retry is not None:
                    held.retry.cancel()
                log.info("mirror: run %s written after %d refusals", workflow_id, held.attempts)

    # --- the journal

    def drain_journal(self) -> int:
        """Ship the journal folder this mirror was given (tests and one-process tools; a
        worker's own ``Shipper`` does this in production)."""
        if self.journal_dir is None:
            return 0
        return ship_journal(self.engine, self.journal_dir)

    # --- following

    async def run(self, stop: asyncio.Event) -> None:
        """Follow runs until ``stop`` is set; errors are logged and retried, never fatal."""
        loop = asyncio.get_running_loop()

        def nudged(workflow_id: str, temporal_run_id: str) -> None:
            loop.call_soon_threadsafe(self._nudged_by_worker, workflow_id, temporal_run_id)

        unsubscribe = listen(nudged)
        writer_stop = asyncio.Event()
        writer = asyncio.create_task(self._writer(writer_stop))
        listener = asyncio.create_task(self._listen())
        since = datetime.now(UTC) - timedelta(hours=1)
        backoff = self.poll_interval
        try:
            while not stop.is_set():
                started = datetime.now(UTC)
                try:
                    await self.poll_once(since)
                    since = started - timedelta(seconds=30)
                    backoff = self.poll_interval
                except Exception as err:  # the database or Temporal may be down: keep going
                    self._error(err)
                    backoff = min(backoff * 2, 10.0)
                try:
                    await asyncio.wait_for(stop.wait(), timeout=backoff)
                except TimeoutError:
                    pass
        finally:
            unsubscribe()
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
            for task in self._tasks.values():
                task.cancel()
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)
            self._tasks.clear()
            writer_stop.set()
            await writer
            for held in self.quarantined.values():
                if held.retry is not None:
                    held.retry.cancel()
            try:
                await asyncio.to_thread(self.drain_journal)
                await asyncio.to_thread(self._leave)
            except Exception as err:
                self._error(err)
            if self.copies_held:
                log.warning(
                    "mirror: stopped with %d payload copies the blob store did not take (%s); "
                    "`runrecord mirror rebuild` writes them again",
                    len(self.copies_held),
                    self.blob_store_error,
                )

    async def _listen(self) -> None:
        """Hear from workers anywhere (their shippers' ``NOTIFY``) that a run started or
        moved on, and follow it at once; PostgreSQL only. The visibility poll stays: a
        notification sent while this connection was down is not heard again."""
        conninfo = listen_url(self.engine)
        if conninfo is None:
            return
        import psycopg

        backoff = self.poll_interval
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    conninfo, autocommit=True, connect_timeout=5
                )
                async with conn:
                    await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    backoff = self.poll_interval
                    async for note in conn.notifies():
                        self._heard(note.payload)
            except asyncio.CancelledError:
                raise
            except Exception as err:  # the database may be down: listen again later
                self._error(err)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    def _heard(self, payload: str) -> None:
        try:
            note = json.loads(payload)
            namespace, workflow_id, run_id = note["namespace"], note["workflowId"], note["runId"]
        except (ValueError, KeyError, TypeError):
            return  # not ours: someone else's NOTIFY on the channel
        if namespace == self.namespace and isinstance(workflow_id, str) and isinstance(run_id, str):
            self._nudged_by_worker(workflow_id, run_id)

    def _nudged_by_worker(self, workflow_id: str, temporal_run_id: str) -> None:
        """A worker (in this process, or anywhere through ``NOTIFY``) started a run or moved
        it on: follow it now, not at the next poll."""
        key = (workflow_id, temporal_run_id)
        if not temporal_run_id or key in self._tasks or key in self._done:
            return
        if self.membership.owns(workflow_id):
            self._follow_chain(workflow_id, temporal_run_id)

    def _error(self, err: BaseException) -> str:
        message = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        self.errors = [*self.errors[-99:], message]
        log.warning("mirror: %s", message)
        return message

    async def poll_once(self, since: datetime) -> int:
        """Drain the journal, beat, and follow every run of ours that has grown since ``since``.

        Returns how many Temporal runs it started following."""
        await asyncio.to_thread(self.drain_journal)
        await asyncio.to_thread(self._heartbeat)
        if self.copies_held:
            await asyncio.to_thread(self.keep_copies, {})
        wanted: list[tuple[str, str, int]] = []
        query = f"{OPEN_QUERY} OR CloseTime > '{_visibility_time(since)}'"
        async for info in self._agent_runs(query):
            # An open run's length in visibility is stale: follow it whatever it says.
            length = 0 if is_open(info) else info.history_length
            wanted.append((info.execution.workflow_id, info.execution.run_id, length))
        wanted = [w for w in wanted if self.membership.owns(w[0])]
        known = await asyncio.to_thread(self._cursors, {w[0] for w in wanted})
        started = 0
        for workflow_id, temporal_run_id, length in wanted:
            key = (workflow_id, temporal_run_id)
            if key in self._tasks:
                continue
            if length > 0 and known.get(key, -1) >= length:
                continue  # every event of it is in the records
            self._follow_chain(workflow_id, temporal_run_id)
            started += 1
        # Runs that moved to another mirror are left to it.
        for key, task in list(self._tasks.items()):
            if not self.membership.owns(key[0]):
                task.cancel()
        return started

    def _cursors(self, workflow_ids: Iterable[str]) -> dict[tuple[str, str], int]:
        ids = list(workflow_ids)
        if not ids:
            return {}
        with self.engine.connect() as conn:
            stored = stored_cursors(conn, self.namespace, ids)
        return {(w, r): last for w, runs in stored.items() for r, last in runs.items()}

    def _follow_chain(self, workflow_id: str, temporal_run_id: str) -> None:
        """Follow a Temporal run. The chain's other runs are found through the links its
        histories hold (continue-as-new, reset), and, as the chain forms, in the records (a
        run started again under the same id has no link to the one before); with no run
        id, through Temporal."""
        if workflow_id not in self._chains:
            self._chains[workflow_id] = RunChain(workflow_id, self.namespace)
            self._tasks[(workflow_id, "+")] = asyncio.create_task(self._recorded(workflow_id))
        if temporal_run_id:
            self._start(workflow_id, temporal_run_id)
        elif (workflow_id, "*") not in self._tasks:
            self._tasks[(workflow_id, "*")] = asyncio.create_task(self._discover(workflow_id))

    async def _discover(self, workflow_id: str) -> None:
        try:
            for temporal_run_id in await self.temporal_run_ids(workflow_id):
                self._start(workflow_id, temporal_run_id)
        except Exception as err:
            self._error(err)
        finally:
            self._task_done((workflow_id, "*"))

    async def _recorded(self, workflow_id: str) -> None:
        """Fold the Temporal runs of a workflow id the records already hold, so that a later
        run re-using their call ids keeps their calls apart instead of overwriting them.

        Each is folded whole before the chain holds it: a change set with a run folded only
        part way would be behind that run's stored cursor, and dropped."""
        try:
            known = await asyncio.to_thread(self._cursors, [workflow_id])
            for key in sorted(known):
                temporal_run_id = key[1]
                chain = self._chains.get(workflow_id)
                if chain is None or temporal_run_id in chain.folds or key in self._tasks:
                    continue
                fold = RunProjection(workflow_id, self.namespace, temporal_run_id)
                folded = await self._fold_history(workflow_id, fold)
                if not folded or temporal_run_id in chain.folds:
                    continue
                chain.folds[temporal_run_id] = fold
                self._changed(workflow_id)
                if fold.final_status is FinalStatus.RUNNING:
                    self._start(workflow_id, temporal_run_id)
        except Exception as err:
            self._error(err)
        finally:
            self._task_done((workflow_id, "+"))

    def _start(self, workflow_id: str, temporal_run_id: str) -> None:
        key = (workflow_id, temporal_run_id)
        if key not in self._tasks and temporal_run_id:
            self._done.pop(key, None)
            self._tasks[key] = asyncio.create_task(self._follow(workflow_id, temporal_run_id))

    async def _follow(self, workflow_id: str, temporal_run_id: str) -> None:
        key = (workflow_id, temporal_run_id)
        chain = self._chains.setdefault(workflow_id, RunChain(workflow_id, self.namespace))
        fold = chain.fold(temporal_run_id)
        state = self.followed.setdefault(key, Followed(workflow_id, temporal_run_id))
        token = b""
        backoff = self.poll_interval
        watch = asyncio.create_task(self._watch_pending(workflow_id, temporal_run_id, fold))
        try:
            while True:
                try:
                    page = await self.page(workflow_id, temporal_run_id, token, wait=True)
                    if page.history.events:
                        fold.apply_all(page.history.events)
                        self._changed(workflow_id)
                        for linked in _linked(chain):
                            self._start(workflow_id, linked)
                    token = page.next_page_token
                    state.error = None
                    backoff = self.poll_interval
                    if not token:
                        break  # closed, and every event is in the records
                except asyncio.CancelledError:
                    raise
                except Exception as err:  # Temporal or the database may be down: fold on
                    if isinstance(err, RPCError) and err.status == RPCStatusCode.NOT_FOUND:
                        state.error = "history no longer in Temporal; the record is kept"
                        break
                    state.error = self._error(err)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 10.0)
            self._done[key] = None
            if len(self._done) > _DONE_KEPT:
                for old in list(self._done)[: _DONE_KEPT // 2]:
                    del self._done[old]
        finally:
            watch.cancel()
            self.followed.pop(key, None)
            self._task_done(key)

    async def _watch_pending(
        self, workflow_id: str, temporal_run_id: str, fold: RunProjection
    ) -> None:
        """Record operators' actions on the run's pending calls (see ``_operations``): they
        are in no history event, so the run is described while it has pending calls."""
        watch = ActivityWatch(workflow_id)
        request = DescribeWorkflowExecutionRequest(
            namespace=self.namespace,
            execution=WorkflowExecutionProto(workflow_id=workflow_id, run_id=temporal_run_id),
        )
        behind = 0
        while True:
            await asyncio.sleep(self.poll_interval)
            calls = fold.pending_activities()
            if not calls and not watch.unwritten:
                continue
            try:
                if calls:
                    described = await self.client.workflow_service.describe_workflow_execution(
                        request
                    )
                    # Compare only once the fold has read as far as the description: a note
                    # sent just before an unpause must be folded when the unpause is seen.
                    length = described.workflow_execution_info.history_length
                    if fold.last_event_id < length and behind < 5:
                        behind += 1
                        continue
                    behind = 0
                    now = datetime.now(UTC)
                    watch.observe(described.pending_activities, calls, now, fold.signals)
                if watch.unwritten:
                    await asyncio.to_thread(self._write_operations, watch.unwritten)
                    watch.unwritten = []
            except asyncio.CancelledError:
                raise
            except Exception as err:  # Temporal or the database may be down: try again
                self._error(err)

    def _write_operations(self, rows: list[dict[str, Any]]) -> None:
        keys = ("run_id", "tool_call_id", "operation", "at")
        with self.engine.begin() as conn:
            upsert(conn, ActivityOperationRow, rows, keys, update=False)

    def _task_done(self, key: tuple[str, str]) -> None:
        """A chain's task ended: forget the chain once none of its tasks is left."""
        self._tasks.pop(key, None)
        self._retire_if_idle(key[0])

    def _retire(self, workflow_id: str) -> None:
        """Forget a chain nobody follows, once the writer has written what it holds."""
        if workflow_id in self._unsaved or workflow_id in self._full_write:
            loop = asyncio.get_running_loop()
            loop.call_later(self.poll_interval, self._retire_if_idle, workflow_id)
            return
        self._chains.pop(workflow_id, None)

    def _retire_if_idle(self, workflow_id: str) -> None:
        if not any(k[0] == workflow_id for k in self._tasks):
            self._retire(workflow_id)

    # --- scale out: heartbeats and the share of runs

    def _heartbeat(self) -> None:
        with self.engine.begin() as conn:
            self.membership = heartbeat(
                conn,
                mirror_id=self.mirror_id,
                namespace=self.namespace,
                started_at=self._started_at,
                poll_interval=self.poll_interval,
                followed=list(self.followed.values()),
                quarantined=list(self.quarantined.values()),
                errors=self.errors,
                copies=self.copies_report(),
            )

    def copies_report(self) -> dict[str, Any] | None:
        """The payload copies held while the blob store is out, and those dropped; None
        when there are none."""
        with self._copies_lock:
            if not self.copies_held and not self.copies_dropped:
                return None
            return {
                "held": len(self.copies_held),
                "bytes": sum(len(data) for data, _ in self.copies_held.values()),
                "dropped": self.copies_dropped,
                "error": self.blob_store_error,
            }

    def _leave(self) -> None:
        with self.engine.begin() as conn:
            leave(conn, self.mirror_id)

    # --- rebuild and verify

    async def rebuild(self, workflow_ids: Sequence[str], *, concurrency: int = 4) -> RebuildReport:
        """Re-project runs from history and write every row; runs without history are kept."""
        report = RebuildReport()
        ids = list(workflow_ids)
        runs_of: dict[str, list[str]] = {}
        for batch in _lookup_batches(ids):
            runs_of.update(await self.temporal_run_ids_of(batch, describe_listed=False))
        queue: asyncio.Queue[str] = asyncio.Queue()
        for workflow_id in ids:
            queue.put_nowait(workflow_id)

        written: asyncio.Queue[_Change | None] = asyncio.Queue()

        async def work() -> None:
            while not queue.empty():
                workflow_id = queue.get_nowait()
                chain = await self.project(workflow_id, runs_of[workflow_id])
                if not chain.ordered():
                    report.kept.append(workflow_id)
                    continue
                report.events += sum(f.last_event_id for f in chain.ordered())
                written.put_nowait(self._take(chain, everything=True))

        async def write() -> None:
            # Writes overlap the fetching: each round takes whatever has been folded.
            done = False
            while not done:
                batch = [await written.get()]
                while not written.empty():
                    batch.append(written.get_nowait())
                done = batch[-1] is None
                changes = [c for c in batch if c is not None]
                if changes:
                    wrote, refused = await self._write(changes)
                    report.runs += len(wrote)
                    report.refused.update(refused)

        writer = asyncio.create_task(write())
        try:
            await asyncio.gather(*(work() for _ in range(max(1, concurrency))))
        finally:
            written.put_nowait(None)
            await writer
        return report

    async def verify(self, workflow_id: str) -> list[str]:
        """Every difference between the records and a fresh projection of the run's history."""
        return await differences(self, workflow_id)

    async def agent_run_ids(self, since: datetime) -> list[str]:
        """The agent runs (workflow ids with the ``RunRecordAgent`` search attribute) Temporal
        lists on this namespace that started at or after ``since``."""
        query = f"StartTime >= '{_visibility_time(since)}'"
        return sorted({info.execution.workflow_id async for info in self._agent_runs(query)})

    async def _agent_runs(self, query: str) -> AsyncIterator[WorkflowExecutionInfo]:
        """The executions visibility lists for ``query`` that are agent runs, paused ones
        included."""
        async for info in list_executions(self.client, query):
            if is_agent_run(info):
                yield info

    async def missing_run_ids(self, since: datetime) -> list[str]:
        """Agent runs Temporal has (started at or after ``since``) that the records lack."""
        return await missing_from_records(self, since)

    def all_run_ids(self) -> list[str]:
        """Every run in the records of this namespace."""
        with self.engine.connect() as conn:
            return list(
                conn.execute(
                    select(RunRow.run_id)
                    .where(RunRow.namespace == self.namespace)
                    .order_by(RunRow.run_id)
                ).scalars()
            )


@dataclass
class RebuildReport:
    runs: int = 0
    events: int = 0
    kept: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)
    """Runs whose rows the records database refused, with its error."""


def _lookup_batches(workflow_ids: list[str]) -> Iterable[list[str]]:
    """Workflow ids in batches for one visibility query each, kept to a modest length."""
    batch: list[str] = []
    size = 0
    for workflow_id in workflow_ids:
        if batch and (len(batch) == LOOKUP_BATCH or size + len(workflow_id) > 8000):
            yield batch
            batch, size = [], 0
        batch.append(workflow_id)
        size += len(workflow_id) + 4
    if batch:
        yield batch


def _visibility_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _linked(chain: RunChain) -> list[str]:
    """Temporal runs a chain's histories point at: continue-as-new successors, reset bases."""
    found = []
    for fold in chain.folds.values():
        for temporal_run_id in [*fold.temporal_run_ids, fold.reset_from, fold.continued_from]:
            if (
                temporal_run_id
                and temporal_run_id not in chain.folds
                and temporal_run_id not in found
            ):
                found.append(temporal_run_id)
    return found


def write_changes(conn: Connection, namespace: str, changes: list[_Change]) -> set[str]:
    """Write change sets unless the records are already further on; returns the runs written.

    A change set behind the stored cursor of any of its Temporal runs is dropped: the
    records already hold those events and more (another mirror wrote them).
    """
    runs = sorted({c.workflow_id for c in changes})
    lock_runs(conn, namespace, runs)
    stored = stored_cursors(conn, namespace, runs)
    rows: Rows = {}
    wrote: set[str] = set()
    for change in changes:
        mine = stored.get(change.workflow_id, {})
        if any(
            last < mine.get(temporal_run_id, 0) for temporal_run_id, last in change.cursors.items()
        ):
            continue
        ahead = any(
            last > mine.get(temporal_run_id, 0) for temporal_run_id, last in change.cursors.items()
        )
        if not ahead and not change.everything:
            continue
        wrote.add(change.workflow_id)
        for name, table_rows in change.rows.items():
            rows.setdefault(name, []).extend(table_rows)
    write_rows(conn, rows)
    attest_written(
        conn, {c.workflow_id: c.attest for c in changes if c.attest and c.workflow_id in wrote}
    )
    return wrote
