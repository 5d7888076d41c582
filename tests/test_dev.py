"""`runrecord dev` runs the embedded stack in the foreground, on the ports it is given, and stops
all of it on Ctrl-C; its example worker keeps off the task queue of the user's own workers."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

from temporalio.api.enums.v1 import TaskQueueKind, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from runrecord._settings import DEFAULT_TASK_QUEUE
from runrecord.worker import free_port, port_open
from tests import agents_for_tests


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            found.append(int(entry.name))
    return found


RUNRECORD = [sys.executable, "-m", "runrecord.cli"]


def _start(args: list[str], env: dict[str, str], ready: str) -> tuple[subprocess.Popen[str], str]:
    """Start a long-running runrecord command; return it with its output up to ``ready``."""
    proc = subprocess.Popen(
        [*RUNRECORD, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    banner = []
    deadline = time.monotonic() + 90
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        banner.append(line.rstrip())
        if ready in line:
            break
    if proc.poll() is not None and proc.stderr is not None:
        banner.append(proc.stderr.read())
    return proc, "\n".join(banner)


def _stop(proc: subprocess.Popen[str]) -> tuple[int, str]:
    """Ctrl-C, as a person would; returns the exit code and what it wrote on stderr."""
    proc.send_signal(signal.SIGINT)
    try:
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
    return code, proc.stderr.read() if proc.stderr else ""


def _free_ports() -> tuple[int, int]:
    """Two free ports, never Temporal's defaults (tests run beside other servers)."""
    port, ui_port = free_port(), free_port()
    while ui_port == port:
        ui_port = free_port()
    return port, ui_port


def test_dev_serves_the_demo_and_stops_cleanly(cli_env: dict[str, str], home: Path) -> None:
    port, ui_port = _free_ports()
    env = {k: v for k, v in cli_env.items() if k != "TEMPORAL_ADDRESS"}
    dev, text = _start(["dev", "--port", str(port), "--ui-port", str(ui_port)], env, "Press Ctrl-C")
    try:
        assert f"Temporal gRPC:    127.0.0.1:{port}" in text, text
        assert f"Temporal UI:      http://127.0.0.1:{ui_port}" in text, text
        assert "Records database: postgresql+psycopg://" in text, text
        assert f"Other commands:   export TEMPORAL_ADDRESS=127.0.0.1:{port}" in text, text
        assert (home / "temporal.sqlite3").exists()

        # With the stack up, the demo uses it instead of starting another.
        demo = subprocess.run(
            [*RUNRECORD, "demo", "--json"],
            env={
                **env,
                "TEMPORAL_ADDRESS": f"127.0.0.1:{port}",
                "TEMPORAL_UI_URL": f"http://127.0.0.1:{ui_port}",
            },
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        assert demo.returncode == 0, demo.stderr
        root = json.loads(demo.stdout)[0]
        assert root["temporalUiUrl"].startswith(f"http://127.0.0.1:{ui_port}/namespaces/default/")
        assert len(_processes_mentioning(str(home / "temporal.sqlite3"))) == 1
    finally:
        code, stderr = _stop(dev)
    assert code == 0, stderr
    deadline = time.monotonic() + 10
    while _processes_mentioning(str(home / "temporal.sqlite3")) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _processes_mentioning(str(home / "temporal.sqlite3")) == []
    assert not port_open("127.0.0.1", port)


async def _pollers(client: Client, task_queue: str) -> set[str]:
    """Identities of the workers polling ``task_queue`` for workflow tasks."""
    response = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=task_queue, kind=TaskQueueKind.TASK_QUEUE_KIND_NORMAL),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
    )
    return {p.identity for p in response.pollers}


async def test_dev_leaves_the_default_task_queue_to_the_users_worker(
    cli_env: dict[str, str],
) -> None:
    port, ui_port = _free_ports()
    env = {k: v for k, v in cli_env.items() if k != "TEMPORAL_ADDRESS"}
    dev, text = await asyncio.to_thread(
        _start, ["dev", "--port", str(port), "--ui-port", str(ui_port)], env, "Press Ctrl-C"
    )
    user = None
    try:
        assert f"Temporal gRPC:    127.0.0.1:{port}" in text, text
        assert "Task queue:       runrecord-examples" in text, text
        user_env = {**env, "TEMPORAL_ADDRESS": f"127.0.0.1:{port}"}
        user, started = await asyncio.to_thread(
            _start,
            ["worker", "--module", "tests.agents_for_tests", "--no-mirror"],
            user_env,
            "Worker on",
        )
        assert f"task queue {DEFAULT_TASK_QUEUE}" in started, started

        client = await Client.connect(f"127.0.0.1:{port}")
        deadline = time.monotonic() + 60
        while True:
            examples = await _pollers(client, "runrecord-examples")
            default = await _pollers(client, DEFAULT_TASK_QUEUE)
            if (examples and default) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        # Only the user's worker (identity pid@host) polls the queue its agents run on.
        assert {identity.split("@")[0] for identity in default} == {str(user.pid)}
        assert {identity.split("@")[0] for identity in examples} == {str(dev.pid)}

        result = await client.execute_workflow(
            agents_for_tests.NoteTaker.run,
            "queue",
            id=f"notes-{uuid.uuid4().hex[:8]}",
            task_queue=DEFAULT_TASK_QUEUE,
            execution_timeout=timedelta(seconds=60),
        )
        assert result == "42 wrote queue-checked"
    finally:
        if user is not None:
            user_code, user_stderr = await asyncio.to_thread(_stop, user)
        code, stderr = await asyncio.to_thread(_stop, dev)
    assert code == 0, stderr
    assert user_code == 0, user_stderr
    assert "is not registered on this worker" not in stderr + user_stderr
