"""Purpose-built agents for the query tests: a reporter that delegates review to a sub-agent.

The reporter writes a report (an artifact), hands it to a reviewer sub-agent (lineage: passed
to a sub-agent), which reviews it in a tool call (lineage: consumed by a call) and writes a
review; the reporter then publishes the report. Inputs switch on a failing publish or a
flaky upload; ``ReporterV2`` is the same agent with a new prompt version.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

from pydantic import BaseModel
from temporalio import activity, workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    import runrecord
    from runrecord.activities import ModelRequest, register_script
    from runrecord.records import Artifact, ModelResult, ModelSpec
    from runrecord.workflows import agent_spec


class ReportTask(BaseModel):
    name: str
    fail_publish: bool = False
    flaky_upload: bool = False


@runrecord.tool("read", idempotent=True)
@activity.defn
async def fetch_spec(name: str) -> str:
    return f"spec of {name}"


@runrecord.tool("write")
@activity.defn
async def write_report(name: str, text: str) -> Artifact:
    return runrecord.artifact(f"report://{name}", kind="file", content=text)


@runrecord.tool("write")
@activity.defn
async def review_report(report: Artifact) -> Artifact:
    return runrecord.artifact(f"review://{report.uri}", kind="message", content="looks fine")


@runrecord.tool("network")
@activity.defn
async def upload_report(name: str, flaky: bool) -> str:
    if flaky and activity.info().attempt < 2:
        raise RuntimeError("upload connection reset")
    return f"uploaded {name}"


@runrecord.tool("network", approval=True)
@activity.defn
async def publish_report(report: Artifact, fail: bool) -> str:
    if fail:
        raise ApplicationError("publisher rejected the report", non_retryable=True)
    return f"published {report.uri}"


_MODEL = ModelSpec(provider="scripted", name="scripted-1", parameters={"temperature": 0})
register_script(
    "query-reporter",
    [ModelResult(provider="scripted", model="scripted-1", content="Write and publish it.")],
)
register_script(
    "query-reviewer",
    [ModelResult(provider="scripted", model="scripted-1", content="Review it.")],
)
_TIMEOUT = timedelta(seconds=10)


async def _ask(agent_cls: type, agent_id: str, text: str) -> None:
    spec = agent_spec(agent_cls)
    assert spec is not None and spec.model is not None and spec.prompt is not None
    await workflow.execute_activity(
        runrecord.call_model,
        ModelRequest(agent_id=agent_id, model=spec.model, prompt=spec.prompt, messages=[text]),
        start_to_close_timeout=_TIMEOUT,
    )


async def _report(agent_cls: type, task: ReportTask) -> str:
    await _ask(agent_cls, "reporter", f"report {task.name}")
    spec = await workflow.execute_activity(fetch_spec, task.name, start_to_close_timeout=_TIMEOUT)
    report = await workflow.execute_activity(
        write_report, args=[task.name, spec], start_to_close_timeout=_TIMEOUT
    )
    await workflow.execute_child_workflow(
        Reviewer.run, report, id=f"{workflow.info().workflow_id}.reviewer"
    )
    await workflow.execute_activity(
        upload_report,
        args=[task.name, task.flaky_upload],
        start_to_close_timeout=_TIMEOUT,
        retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=50)),
    )
    return await workflow.execute_activity(
        publish_report, args=[report, task.fail_publish], start_to_close_timeout=_TIMEOUT
    )


_Agent = TypeVar("_Agent", bound=type)


def _reporter(prompt_version: str, template: str) -> Callable[[_Agent], _Agent]:
    """The reporter agent's declaration, with the prompt version as the only difference."""
    return runrecord.agent(
        "reporter",
        version="1.0",
        model=_MODEL.model_copy(update={"parameters": {"script": "query-reporter"}}),
        prompt=runrecord.Prompt(name="reporter", version=prompt_version, template=template),
    )


@_reporter("1", "Write short reports.")
@workflow.defn
class Reporter:
    @workflow.run
    async def run(self, task: ReportTask) -> str:
        return await _report(Reporter, task)


@_reporter("2", "Write long reports.")
@workflow.defn
class ReporterV2:
    @workflow.run
    async def run(self, task: ReportTask) -> str:
        return await _report(ReporterV2, task)


@runrecord.agent(
    "reviewer",
    version="1.0",
    model=_MODEL.model_copy(update={"parameters": {"script": "query-reviewer"}}),
    prompt=runrecord.Prompt(name="reviewer", version="1", template="Review reports."),
)
@workflow.defn
class Reviewer:
    @workflow.run
    async def run(self, report: Artifact) -> str:
        await _ask(Reviewer, "reviewer", f"review {report.uri}")
        review = await workflow.execute_activity(
            review_report, report, start_to_close_timeout=_TIMEOUT
        )
        return review.uri


WORKFLOWS = [Reporter, ReporterV2, Reviewer]
ACTIVITIES = [
    fetch_spec,
    write_report,
    review_report,
    upload_report,
    publish_report,
    runrecord.call_model,
]
