"""Purpose-built agents and tools for the recording tests."""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    import runrecord
    from runrecord.records import Artifact


@runrecord.tool("write", compensate="erase_note")
@activity.defn
async def write_note(text: str) -> str:
    runrecord.artifact(f"note://{text}", kind="message", content=text)
    return f"wrote {text}"


@runrecord.tool("write")
@activity.defn
async def draft_note(text: str) -> Artifact:
    return runrecord.artifact(f"draft://{text}", kind="file", content=text)


@runrecord.tool("network")
@activity.defn
async def publish_note(note: Artifact) -> str:
    return f"published {note.uri}"


@runrecord.tool("delete")
@activity.defn
async def erase_note(text: str) -> bool:
    return True


@runrecord.tool("network")
@activity.defn
async def flaky_fetch(url: str) -> str:
    attempt = activity.info().attempt
    if attempt < 3:
        raise RuntimeError(f"connection reset on attempt {attempt}")
    return f"fetched {url}"


@activity.defn
async def undeclared_step(value: int) -> int:
    return value * 2


@runrecord.agent("note-taker", version="0.1")
@workflow.defn
class NoteTaker:
    @workflow.run
    async def run(self, text: str) -> str:
        # Plain Temporal calls, no runrecord helper: the interceptor must still record them.
        await workflow.execute_activity(
            write_note, text, start_to_close_timeout=timedelta(seconds=10)
        )
        await workflow.execute_activity(
            flaky_fetch,
            "https://example.invalid/x",
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=RetryPolicy(
                initial_interval=timedelta(milliseconds=50), backoff_coefficient=1.0
            ),
        )
        doubled = await workflow.execute_activity(
            undeclared_step, 21, start_to_close_timeout=timedelta(seconds=10)
        )
        draft = await workflow.execute_activity(
            draft_note, text, start_to_close_timeout=timedelta(seconds=10)
        )
        await workflow.execute_activity(
            publish_note, draft, start_to_close_timeout=timedelta(seconds=10)
        )
        child = await workflow.execute_child_workflow(
            NoteChecker.run, args=[text, draft], id=f"{workflow.info().workflow_id}.checker"
        )
        return f"{doubled} {child}"


@runrecord.agent("note-checker", version="0.1")
@workflow.defn
class NoteChecker:
    @workflow.run
    async def run(self, text: str, draft: Artifact | None = None) -> str:
        return await workflow.execute_activity(
            write_note, f"{text}-checked", start_to_close_timeout=timedelta(seconds=10)
        )


WORKFLOWS = [NoteTaker, NoteChecker]
ACTIVITIES = [write_note, erase_note, flaky_fetch, undeclared_step, draft_note, publish_note]
