"""An agent whose every recorded text carries a NUL: a tool's error, an artifact URI, a model
call's result (a value and a key of a JSON object), approval and deny reasons."""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    import runrecord
    from runrecord.activities import ModelRequest, Prompt, register_script
    from runrecord.records import ModelResult, ModelSpec

NUL = "\x00"
_ONCE = {
    "start_to_close_timeout": timedelta(seconds=30),
    "retry_policy": RetryPolicy(maximum_attempts=1),
}
PROMPT = Prompt(name="nul", version="1", template="Answer.")
MODEL = ModelSpec(
    provider="scripted",
    name=f"scripted{NUL}1",
    parameters={"script": "nul", f"stop{NUL}key": f"end{NUL}value"},
)
register_script("nul", [ModelResult(provider="scripted", model="scripted-1", content=f"a{NUL}b")])


@runrecord.tool("exec")
@activity.defn
async def crash_with_nul(path: str) -> str:
    raise ApplicationError(f"cannot read {path}{NUL}: binary garbage", non_retryable=True)


@runrecord.tool("write")
@activity.defn
async def declare_nul_artifact(path: str) -> str:
    runrecord.artifact(f"file://{path}{NUL}.bak", kind="file", content="backup")
    return path


@runrecord.tool("deploy", approval=True)
@activity.defn
async def release(target: str) -> str:
    return f"released {target}"


@runrecord.agent("nul-agent", version="1")
@workflow.defn
class NulAgent:
    """A failing call, an artifact, a model call, then two gated releases: the first is to be
    approved, the second denied (which ends the run ``escalated``, the reason in its failure)."""

    @workflow.run
    async def run(self, path: str) -> str:
        try:
            await workflow.execute_activity(crash_with_nul, path, **_ONCE)
        except ActivityError:
            pass
        await workflow.execute_activity(declare_nul_artifact, path, **_ONCE)
        request = ModelRequest(agent_id="nul-agent", model=MODEL, prompt=PROMPT, messages=["go"])
        await workflow.execute_activity(runrecord.call_model, request, **_ONCE)
        await workflow.execute_activity(release, "staging", **_ONCE)
        await workflow.execute_activity(release, "production", **_ONCE)
        return "released"


WORKFLOWS = [NulAgent]
ACTIVITIES = [crash_with_nul, declare_nul_artifact, release, runrecord.call_model]
