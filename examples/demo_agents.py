"""The example scenario: a release supervisor agent that delegates deployment to a sub-agent.

Both agents are ordinary Temporal workflows driven by the offline scripted model;
every tool is an ordinary Temporal activity declared with ``@runrecord.tool``.
``deploy`` and ``charge_invoice`` need a person's approval: ``runrecord demo`` approves the
deploy and denies the charge as ``demo-operator``, through the same signal as
``runrecord approve`` / ``deny``. Run it with ``runrecord demo``.
"""

from __future__ import annotations

import asyncio
import hashlib
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from temporalio import activity, workflow

with workflow.unsafe.imports_passed_through():
    import runrecord
    from runrecord.activities import ModelRequest, register_script
    from runrecord.records import ModelResult, ModelSpec
    from runrecord.workflows import agent_spec


class ReleaseTask(BaseModel):
    workspace: str
    version: str = "1.4.0"


# --- tools: ordinary activities with a declared side effect


@runrecord.tool("read", idempotent=True)
@activity.defn
async def read_file(workspace: str, path: str) -> str:
    return (Path(workspace) / path).read_text()


@runrecord.tool("delete")
@activity.defn
async def delete_file(workspace: str, path: str) -> bool:
    target = Path(workspace) / path
    existed = target.exists()
    target.unlink(missing_ok=True)
    return existed


@runrecord.tool("write", compensate=delete_file)
@activity.defn
async def write_file(workspace: str, path: str, content: str) -> str:
    target = Path(workspace) / path
    target.write_text(content)
    runrecord.artifact(f"file://{target}", kind="file", content=content)
    return str(target)


@runrecord.tool("exec")
@activity.defn
async def run_tests(workspace: str, suite: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        f"print('suite {suite}: 12 passed')",
        cwd=workspace,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"tests failed with exit code {proc.returncode}")
    return out.decode().strip()


@runrecord.tool("network", idempotent=True)
@activity.defn
async def check_release_status(workspace: str, version: str) -> str:
    # Offline stand-in for a status endpoint: the demo must run without a network.
    return f"release {version}: not yet published"


@runrecord.tool("deploy", approval=True, compensate="rollback_deploy")
@activity.defn
async def deploy(workspace: str, version: str) -> str:
    manifest = Path(workspace) / f"deploy-{version}.json"
    manifest.write_text(f'{{"version": "{version}", "environment": "staging"}}\n')
    url = f"https://staging.example.internal/releases/{version}"
    runrecord.artifact(url, kind="url", sha256=hashlib.sha256(manifest.read_bytes()).hexdigest())
    return url


@runrecord.tool("deploy")
@activity.defn
async def rollback_deploy(workspace: str, version: str) -> bool:
    manifest = Path(workspace) / f"deploy-{version}.json"
    manifest.unlink(missing_ok=True)
    return True


@runrecord.tool("payment", approval=True, irreversible=True)
@activity.defn
async def charge_invoice(workspace: str, amount_cents: str) -> str:
    receipt = f"receipt-{hashlib.sha256(amount_cents.encode()).hexdigest()[:10]}"
    runrecord.artifact(f"billing://receipts/{receipt}", kind="message", content=receipt)
    return receipt


TOOLS: dict[str, Any] = {
    "read_file": read_file,
    "write_file": write_file,
    "delete_file": delete_file,
    "run_tests": run_tests,
    "check_release_status": check_release_status,
    "deploy": deploy,
    "rollback_deploy": rollback_deploy,
    "charge_invoice": charge_invoice,
}
ACTIVITIES = [*TOOLS.values(), runrecord.call_model]


# --- the scripted model's answers, one per step


def _step(**fields: Any) -> ModelResult:
    return ModelResult(provider="scripted", model="scripted-1", **fields)


register_script(
    "release-supervisor",
    [
        _step(
            content="Read the changelog first.",
            tool="read_file",
            arguments={"path": "CHANGELOG.md"},
        ),
        _step(
            content="Write release notes from it.",
            tool="write_file",
            arguments={"path": "RELEASE_NOTES.md", "content": "Release 1.4.0: faster sync."},
        ),
        _step(content="Hand deployment to the deployer agent.", delegate="release-deployer"),
        _step(content="Release prepared and deployed.", done=True),
    ],
)
register_script(
    "release-deployer",
    [
        _step(content="Run the test suite.", tool="run_tests", arguments={"suite": "smoke"}),
        _step(
            content="Check whether it is already out.",
            tool="check_release_status",
            arguments={"version": "1.4.0"},
        ),
        _step(content="Deploy to staging.", tool="deploy", arguments={"version": "1.4.0"}),
        _step(
            content="Charge the release fee.",
            tool="charge_invoice",
            arguments={"amount_cents": "1200"},
        ),
        _step(content="Deployed.", done=True),
    ],
)


async def _agent_loop(agent_cls: type, task: ReleaseTask) -> str:
    spec = agent_spec(agent_cls)
    assert spec is not None and spec.model is not None and spec.prompt is not None
    messages: list[str] = [f"release {task.version}"]
    for step in range(20):
        decision = await workflow.execute_activity(
            runrecord.call_model,
            ModelRequest(
                agent_id=spec.agent_id,
                model=spec.model,
                prompt=spec.prompt,
                messages=messages,
                step=step,
            ),
            start_to_close_timeout=timedelta(seconds=30),
        )
        if decision.done:
            return decision.content
        if decision.delegate:
            child = DELEGATES[decision.delegate]
            result = await workflow.execute_child_workflow(
                child.run, task, id=f"{workflow.info().workflow_id}.{decision.delegate}"
            )
        elif decision.tool:
            try:
                result = await workflow.execute_activity(
                    TOOLS[decision.tool],
                    args=[task.workspace, *decision.arguments.values()],
                    start_to_close_timeout=timedelta(seconds=30),
                )
            except runrecord.ToolDenied as denied:
                # A person said no: tell the model and carry on.
                result = f"{decision.tool} denied by {denied.decided_by}: {denied.reason}"
        messages.append(str(result))
    raise RuntimeError("agent did not finish within 20 steps")


MODEL = ModelSpec(provider="scripted", name="scripted-1", parameters={"temperature": 0})


@runrecord.agent(
    "release-deployer",
    version="1.0.0",
    model=MODEL.model_copy(
        update={"parameters": {**MODEL.parameters, "script": "release-deployer"}}
    ),
    prompt=runrecord.Prompt(
        name="deployer", version="2", template="You deploy releases safely. Test, then deploy."
    ),
)
@workflow.defn
class ReleaseDeployer:
    @workflow.run
    async def run(self, task: ReleaseTask) -> str:
        return await _agent_loop(ReleaseDeployer, task)


@runrecord.agent(
    "release-supervisor",
    version="1.0.0",
    model=MODEL.model_copy(
        update={"parameters": {**MODEL.parameters, "script": "release-supervisor"}}
    ),
    prompt=runrecord.Prompt(
        name="supervisor",
        version="3",
        template="You prepare releases. Read the changelog, write notes, delegate deployment.",
    ),
)
@workflow.defn
class ReleaseSupervisor:
    @workflow.run
    async def run(self, task: ReleaseTask) -> str:
        return await _agent_loop(ReleaseSupervisor, task)


DELEGATES: dict[str, Any] = {"release-deployer": ReleaseDeployer}
WORKFLOWS = [ReleaseSupervisor, ReleaseDeployer]


def prepare_workspace(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "CHANGELOG.md").write_text("## 1.4.0\n- faster sync\n")
    return path
