"""Agents that carry every secret of the redaction corpus through everything runrecord records:
tool arguments (values and keys), results, long errors, model prompts and parameters,
artifact URIs, approval and rollback reasons.

Also a worker module: ``runrecord worker --module tests.corpus_agents``.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel
from temporalio import activity, workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    import runrecord
    from runrecord.activities import ModelRequest, Prompt, register_script
    from runrecord.records import ModelResult, ModelSpec
    from tests.redaction_corpus import NAMED_FIELD_SECRET, SECRETS, secret_text

SECRET_TEXT = secret_text()
KEYED = {**{text: name for name, (text, _) in SECRETS.items()}, "clientSecret": NAMED_FIELD_SECRET}
"""Every corpus text as a key of a JSON object, and a secret found by its field's name."""
URL_PASSWORD = SECRETS["url_password"][1]


def straddling(cut: int, prefix: str, secret: str = "github_fine_grained_token") -> str:
    """A text whose first ``cut`` characters (``prefix`` included) end in the middle of a
    secret, followed by every other secret."""
    value = SECRETS[secret][1]
    return "x" * (cut - len(prefix) - 17) + value + "\n" + SECRET_TEXT


LONG_ERROR = straddling(2000, "RuntimeError: ")
"""An error text longer than 2,000 characters with a secret across the 2,000th."""
FAILURE = straddling(500, "ApplicationError: ", "stripe_long_live_key")
"""The agent's final error, which becomes its rollback reason (500 characters kept)."""
COMPENSATOR_FAILURE = straddling(
    500, "compensator forget_note failed: ApplicationError: ", "slack_app_token"
)

MODEL = ModelSpec(
    provider="scripted",
    name="scripted-1",
    parameters={
        "script": "corpus",
        "extra_headers": {"Authorization": SECRETS["bearer_token"][0].split(": ", 1)[1]},
        "notes": SECRET_TEXT,
    },
)
PROMPT = Prompt(
    name="corpus", version="1", template="You are the operations agent.\n" + SECRET_TEXT
)
register_script(
    "corpus", [ModelResult(provider="scripted", model="scripted-1", content=SECRET_TEXT)]
)

_TIMEOUT = timedelta(seconds=30)
_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=100), backoff_coefficient=1.0)


@runrecord.tool("delete")
@activity.defn
async def forget_note(values: dict[str, str], kept: dict[str, str]) -> None:
    raise ApplicationError(COMPENSATOR_FAILURE, non_retryable=True)


@runrecord.tool("write", compensate=forget_note)
@activity.defn
async def keep_note(values: dict[str, str]) -> dict[str, str]:
    runrecord.artifact(
        f"https://deploy:{URL_PASSWORD}@artifacts.internal/notes?{SECRET_TEXT}",
        kind="url",
        content="note",
    )
    return {**values, SECRETS["github_token"][1]: SECRET_TEXT}


@runrecord.tool("network")
@activity.defn
async def fail_long(text: str) -> str:
    if activity.info().attempt == 1:
        raise RuntimeError(LONG_ERROR)
    return "sent"


@runrecord.tool("deploy", approval=True)
@activity.defn
async def release(target: str) -> str:
    return f"released {len(target)} bytes"


class CorpusTask(BaseModel):
    text: str
    keyed: dict[str, str]


@runrecord.agent("corpus-agent", version="1", model=MODEL, prompt=PROMPT, rollback_on_failure=True)
@workflow.defn
class CorpusAgent:
    """Calls 1-5: keep_note, fail_long (fails once), release (approved), release (denied),
    the model; then fails, and its rollback cannot undo keep_note."""

    @workflow.run
    async def run(self, task: CorpusTask) -> str:
        await workflow.execute_activity(keep_note, task.keyed, start_to_close_timeout=_TIMEOUT)
        await workflow.execute_activity(
            fail_long, task.text, start_to_close_timeout=_TIMEOUT, retry_policy=_RETRY
        )
        await workflow.execute_activity(release, task.text, start_to_close_timeout=_TIMEOUT)
        try:
            await workflow.execute_activity(
                release, "again " + task.text, start_to_close_timeout=_TIMEOUT
            )
        except runrecord.ToolDenied:
            pass
        request = ModelRequest(
            agent_id="corpus-agent", model=MODEL, prompt=PROMPT, messages=[task.text]
        )
        await workflow.execute_activity(
            runrecord.call_model, request, start_to_close_timeout=_TIMEOUT
        )
        raise ApplicationError(FAILURE, non_retryable=True)


@runrecord.agent("corpus-waiter", version="1")
@workflow.defn
class CorpusWaiter:
    """Call 1 keeps a note, call 2 waits for an approval nobody gives: a run to pause,
    resume, reset and roll back."""

    @workflow.run
    async def run(self, text: str) -> str:
        await workflow.execute_activity(
            keep_note, {"note": "plain"}, start_to_close_timeout=_TIMEOUT
        )
        return await workflow.execute_activity(release, text, start_to_close_timeout=_TIMEOUT)


WORKFLOWS = [CorpusAgent, CorpusWaiter]
ACTIVITIES = [forget_note, keep_note, fail_long, release, runrecord.call_model]
