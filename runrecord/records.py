"""The record contract: what a run record says, as pydantic models.

JSON uses camelCase names (``runId``, ``toolCalls`` ...); Python uses snake_case.
Every other part of runrecord produces or consumes these models. What runrecord writes into
Temporal to build them from (headers, memo, signals, journal lines) is ``runrecord._contract``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

SCHEMA_VERSION = 1


class SideEffect(StrEnum):
    """What a tool call may do to the world. ``unknown`` is an undeclared activity."""

    READ = "read"
    WRITE = "write"
    DELETE = "delete"
    EXEC = "exec"
    NETWORK = "network"
    DEPLOY = "deploy"
    PAYMENT = "payment"
    MODEL = "model"
    UNKNOWN = "unknown"


class ApprovalState(StrEnum):
    NOT_REQUIRED = "not_required"
    REQUESTED = "requested"
    APPROVED = "approved"
    DENIED = "denied"
    EXPIRED = "expired"


class ToolCallStatus(StrEnum):
    SCHEDULED = "scheduled"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    DENIED = "denied"
    EXPIRED = "expired"
    COMPENSATED = "compensated"


class FinalStatus(StrEnum):
    RUNNING = "running"
    AWAITING_APPROVAL = "awaiting_approval"
    PAUSED = "paused"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ESCALATED = "escalated"
    ROLLED_BACK = "rolled_back"
    ROLLBACK_INCOMPLETE = "rollback_incomplete"
    CANCELLED = "cancelled"
    TERMINATED = "terminated"
    TIMED_OUT = "timed_out"


class AttemptOutcome(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    LOST = "lost"


class CostDimension(StrEnum):
    """What ``runrecord cost`` groups spend by."""

    AGENT = "agent"
    MODEL = "model"
    TURN = "turn"
    TOOL = "tool"


class Record(BaseModel):
    """Base for every record model: camelCase JSON, snake_case Python."""

    # defer_build: a model's validator is built when first used, not at import, so a command
    # that reads three record types does not pay for all of them.
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        use_enum_values=True,
        extra="forbid",
        defer_build=True,
    )

    def to_json_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


_LIST_ADAPTERS: dict[type[Record], Any] = {}


def to_json_list(records: Sequence[Record]) -> list[dict[str, Any]]:
    """``to_json_dict`` of each record, in one call when they are all of one type (an answer
    may hold thousands of records)."""
    kinds = {type(r) for r in records}
    if len(kinds) != 1:
        return [r.to_json_dict() for r in records]
    kind = kinds.pop()
    adapter = _LIST_ADAPTERS.get(kind)
    if adapter is None:
        from pydantic import TypeAdapter

        adapter = _LIST_ADAPTERS[kind] = TypeAdapter(list[kind])  # type: ignore[valid-type]
    return adapter.dump_python(list(records), mode="json", by_alias=True)  # type: ignore[no-any-return]


class Ref(Record):
    """A payload kept by reference: its hash and size, never its raw content.

    ``sha256`` and ``size`` are of the canonical, unredacted payload (JSON with sorted
    keys, no spaces); the blob store keeps a redacted copy under the same hash.
    """

    sha256: str
    size: int
    media_type: str = "application/json"


class ModelSpec(Record):
    """Which model decided: provider, model id and its configuration.

    ``fallbacks`` are tried in order when a call to this model fails: attempt n of a
    model call uses route n (wrapping around), so every route shows in ``retryState``.
    """

    provider: str
    name: str
    parameters: dict[str, Any] = Field(default_factory=dict)
    fallbacks: list[ModelSpec] = Field(default_factory=list)

    @property
    def route(self) -> str:
        return f"{self.provider}/{self.name}"

    def routes(self) -> list[ModelSpec]:
        return [self, *self.fallbacks]


class ToolAnnotations(Record):
    """MCP tool annotations as a server listed them: hints, believed only from trusted servers."""

    read_only_hint: bool | None = None
    destructive_hint: bool | None = None
    idempotent_hint: bool | None = None
    open_world_hint: bool | None = None


class ToolTraits(Record):
    """What a tool does to the world, as declared once and carried wherever the tool is
    described: its spec, the run's registry, a call's header and the recorded call.

    Whether a tool needs approval is declared beside these (``approval`` on a spec and a
    registry entry); on a call, ``approval`` is the decision."""

    side_effect: SideEffect
    idempotent: bool = False
    irreversible: bool = False
    compensator: str | None = None
    schema_hash: str | None = None
    network: bool = False

    def traits(self) -> dict[str, Any]:
        """The traits alone, as keyword arguments for another description of the same tool."""
        return {name: getattr(self, name) for name in ToolTraits.model_fields}


# Constructed, not validated (the values are plain defaults): validating at import would
# build ToolTraits' validator in every process that imports the records, the CLI's included.
UNDECLARED = ToolTraits.model_construct(side_effect=SideEffect.UNKNOWN.value)
"""The traits of a tool nothing declares: ``unknown``, the most dangerous class."""


class ToolRegistryEntry(ToolTraits):
    """A tool available to the run when it started (MCP tools: when their server was listed)."""

    name: str
    approval: bool = False
    server: str | None = None
    input_schema_hash: str | None = None
    output_schema_hash: str | None = None
    annotations: ToolAnnotations | None = None
    trusted: bool | None = None
    schema_error: str | None = None
    # Offered to the model as a tool that runs inside the workflow (an OpenAI Agents SDK
    # ``@function_tool``, a handoff): no activity, so its calls are not recorded as calls.
    in_workflow: bool = False


class MCPServerInfo(Record):
    """An MCP server as the run found it when it listed the server's tools."""

    name: str
    transport: str
    target: str
    trusted: bool = False
    server_name: str | None = None
    server_version: str | None = None
    protocol_version: str | None = None
    tools: int = 0
    error: str | None = None


class SchemaDrift(Record):
    """A tool whose definition at call time differs from the run's registry snapshot."""

    registry_hash: str | None = None
    current_hash: str | None = None
    changed: list[str] = Field(default_factory=list)
    refused: bool = False


class MCPCall(Record):
    """The MCP side of a tool call: who initiated it, under which schema, what came back."""

    operation: str
    host: str | None = None
    client: str
    trusted: bool = False
    annotations: ToolAnnotations | None = None
    input_schema_hash: str | None = None
    output_schema_hash: str | None = None
    on_drift: str = "refuse"
    is_error: bool | None = None
    drift: SchemaDrift | None = None


class CallOrigin(ToolTraits):
    """What a call is and where it came from, said alike by its header (written as the run
    schedules it) and its record: the tool, the agent that called it, what it consumes or
    undoes and, for an MCP or framework call, the server or framework behind it."""

    tool_call_id: str
    tool: str
    # The agent that made the call (a framework agent, e.g. after an OpenAI handoff).
    agent_id: str | None = None
    local: bool = False
    mcp_server: str | None = None
    mcp: MCPCall | None = None
    consumes: list[str] = Field(default_factory=list)
    compensates: str | None = None
    # Calls of an agent framework's activities: which framework, the activity Temporal ran
    # (``tool`` is then the real tool name) and the tool's toolset, MCP server or graph.
    framework: str | None = None
    activity_type: str | None = None
    toolset: str | None = None

    def origin(self) -> dict[str, Any]:
        """The origin alone (traits included), as keyword arguments for the call's record."""
        return {name: getattr(self, name) for name in CallOrigin.model_fields}


class Approval(Record):
    """Whether a call needed a human's approval, and the decision."""

    state: ApprovalState
    decided_by: str | None = None
    decided_at: datetime | None = None
    applied_at: datetime | None = None
    reason: str | None = None
    rule: str | None = None
    requested_at: datetime | None = None
    expires_at: datetime | None = None
    approvers: list[str] = Field(default_factory=list)
    signed: bool = False
    signal_identity: str | None = None


class ApprovalRejection(Record):
    """A decision the run refused: unknown call, already decided, not allowed, unsigned ..."""

    tool_call_id: str | None = None
    decision: str
    approver: str | None = None
    reason: str
    at: datetime | None = None
    signal_identity: str | None = None


class NotUndone(Record):
    tool_call_id: str
    tool: str
    why: str
    run_id: str | None = None
    """The sub-agent run that made the call; null for the rolled-back run's own call."""


class CallRef(Record):
    """A call of another run: a sub-agent's call that a rollback undid."""

    run_id: str
    tool_call_id: str
    tool: str


class Rollback(Record):
    """What a rollback undid, in reverse call order, and what it could not undo."""

    requested_by: str
    reason: str | None = None
    to_call: str | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    compensated: list[str] = Field(default_factory=list)
    sub_agent_compensated: list[CallRef] = Field(default_factory=list)
    not_undone: list[NotUndone] = Field(default_factory=list)
    outcome: FinalStatus


class Attempt(Record):
    attempt: int
    started_at: datetime | None = None
    ended_at: datetime | None = None
    outcome: AttemptOutcome
    error: str | None = None
    worker_identity: str | None = None
    route: str | None = None


class RetryState(Record):
    attempts: int = 0
    history: list[Attempt] = Field(default_factory=list)
    last_failure: str | None = None
    timeout_type: str | None = None
    maximum_attempts: int | None = None


class Timeouts(Record):
    schedule_to_close_ms: int | None = None
    schedule_to_start_ms: int | None = None
    start_to_close_ms: int | None = None
    heartbeat_ms: int | None = None


class RetryPolicy(Record):
    """The activity's retry policy as the server applies it (null: server default)."""

    initial_interval_ms: int | None = None
    backoff_coefficient: float | None = None
    maximum_interval_ms: int | None = None
    maximum_attempts: int | None = None
    non_retryable_error_types: list[str] = Field(default_factory=list)


class ActivityOperation(Record):
    """An operator's action on a pending call: Temporal keeps it out of history, in the
    pending activity's info only, where the mirror sees it."""

    operation: str  # paused | unpaused | reset | options_updated
    by: str | None = None
    reason: str | None = None
    at: datetime
    attempt: int | None = None
    detail: dict[str, Any] = Field(default_factory=dict)


class ToolCall(CallOrigin):
    """One activity the run scheduled, with everything known about it."""

    approval_state: ApprovalState = ApprovalState.NOT_REQUIRED
    approval: Approval | None = None
    input_refs: list[Ref] = Field(default_factory=list)
    output_refs: list[Ref] = Field(default_factory=list)
    status: ToolCallStatus
    retry_state: RetryState = Field(default_factory=RetryState)
    retry_policy: RetryPolicy | None = None
    timeouts: Timeouts = Field(default_factory=Timeouts)
    activity_id: str | None = None
    temporal_run_id: str | None = None
    scheduled_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    duration_ms: int | None = None
    worker_identity: str | None = None
    cost: float = 0.0
    operations: list[ActivityOperation] = Field(default_factory=list)
    # The trace the call ran in (OpenTelemetry, LangSmith), from its headers.
    trace_id: str | None = None
    span_id: str | None = None


class TokenUsage(Record):
    """A model's answer in tokens (cached input and reasoning tokens are counted in input
    and output too, as providers count them), and why it stopped."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    finish_reason: str | None = None


class ModelCall(TokenUsage):
    """A tool call whose side effect is ``model``: who decided, at what price."""

    tool_call_id: str
    provider: str
    model: str
    parameters: dict[str, Any] = Field(default_factory=dict)
    prompt_version: str | None = None
    cost: float = 0.0
    latency_ms: int | None = None
    # The tools the model was offered in this request, by name.
    tools_offered: list[str] = Field(default_factory=list)
    # False: no price is known for this provider and model, so ``cost`` 0 is not a figure.
    priced: bool = True


class Artifact(Record):
    """Something a tool call produced: a file, URL, PR, message, dataset ..."""

    artifact_id: str
    kind: str
    uri: str
    sha256: str | None = None
    size: int | None = None
    tool_call_id: str
    attempt: int
    run_id: str
    agent_id: str | None = None
    turn_id: str | None = None
    created_at: datetime | None = None
    temporal_run_id: str | None = None


class Cost(Record):
    """Spend of a run: its own calls, with its sub-agents' runs, and per agent in the tree."""

    own: float = 0.0
    total: float = 0.0
    by_agent: dict[str, float] = Field(default_factory=dict)
    currency: str = "USD"


class Pause(Record):
    """A native Temporal pause of the run: who paused it, when and why."""

    paused_by: str | None = None
    reason: str | None = None
    paused_at: datetime | None = None


class TemporalRun(Record):
    """One Temporal run inside a run record: the first, a continue-as-new or a reset."""

    temporal_run_id: str
    began_at: datetime | None = None
    status: FinalStatus = FinalStatus.RUNNING
    continued_from: str | None = None
    reset_from: str | None = None
    reset_reason: str | None = None
    last_event_id: int = 0


class RunRecord(Record):
    """Everything a run did, under which configuration, and how it ended."""

    schema_version: int = SCHEMA_VERSION
    run_id: str
    temporal_run_ids: list[str] = Field(default_factory=list)
    namespace: str = "default"
    workflow_type: str
    task_queue: str | None = None
    turn_id: str | None = None
    agent_id: str | None = None
    agent_version: str | None = None
    model: ModelSpec | None = None
    prompt_version: str | None = None
    tool_registry: list[ToolRegistryEntry] = Field(default_factory=list)
    mcp_servers: list[MCPServerInfo] = Field(default_factory=list)
    tool_calls: list[ToolCall] = Field(default_factory=list)
    model_calls: list[ModelCall] = Field(default_factory=list)
    artifacts: list[Artifact] = Field(default_factory=list)
    final_status: FinalStatus
    failure: str | None = None
    parent_run_id: str | None = None
    root_run_id: str | None = None
    depth: int = 0
    child_run_ids: list[str] = Field(default_factory=list)
    consumes: list[str] = Field(default_factory=list)
    rerun_of: str | None = None
    approval_rejections: list[ApprovalRejection] = Field(default_factory=list)
    rollback: Rollback | None = None
    pause: Pause | None = None
    temporal_runs: list[TemporalRun] = Field(default_factory=list)
    started_at: datetime | None = None
    ended_at: datetime | None = None
    cost: Cost = Field(default_factory=Cost)
    temporal_ui_url: str | None = None


def run_record_json_schema() -> dict[str, Any]:
    """The JSON Schema of RunRecord, as ``runrecord schema`` prints it."""
    return RunRecord.model_json_schema(by_alias=True)


class ModelResult(Record):
    """What a model-call activity returns; the mirror reads it back from history."""

    provider: str
    model: str
    parameters: dict[str, Any] = Field(default_factory=dict)
    prompt_version: str | None = None
    content: str = ""
    tool: str | None = None
    arguments: dict[str, Any] = Field(default_factory=dict)
    delegate: str | None = None
    done: bool = False
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0
    latency_ms: int | None = None
