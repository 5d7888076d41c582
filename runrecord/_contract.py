"""The wire contract: what runrecord writes into Temporal and its journal, and reads back.

Header, memo and search-attribute keys, signal and query names and their payloads, the
journal's lines and the error types runrecord raises. Workers of one version write these and
the mirror of another reads them, so a change here is a change of the contract, like a change
of the run record itself (``runrecord.records``).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import Field
from temporalio.common import SearchAttributeKey

from runrecord.records import (
    Approval,
    ApprovalRejection,
    ApprovalState,
    Artifact,
    Attempt,
    CallOrigin,
    FinalStatus,
    MCPServerInfo,
    ModelSpec,
    Record,
    RetryPolicy,
    Rollback,
    SideEffect,
    ToolRegistryEntry,
)

AGENT_ATTR = SearchAttributeKey.for_keyword("RunRecordAgent")
TURN_ATTR = SearchAttributeKey.for_keyword("RunRecordTurn")
STATUS_ATTR = SearchAttributeKey.for_keyword("RunRecordStatus")
AWAITING_ATTR = SearchAttributeKey.for_bool("RunRecordAwaitingApproval")
SEARCH_ATTRIBUTES: tuple[SearchAttributeKey[Any], ...] = (
    AGENT_ATTR,
    TURN_ATTR,
    STATUS_ATTR,
    AWAITING_ATTR,
)
"""Search attributes every namespace that runs agents must have registered."""

# What the recording interceptor writes into Temporal history (headers and memo).

HEADER_KEY = "runrecord"
MEMO_KEY = "runrecord"


class RunContext(Record):
    """Propagated from the starter to a run and from a run to its sub-agents."""

    turn_id: str | None = None
    parent_run_id: str | None = None
    root_run_id: str | None = None
    depth: int = 0
    consumes: list[str] = Field(default_factory=list)
    rerun_of: str | None = None


class RunMemo(Record):
    """Set by the run at start: who the agent is and what it had available."""

    agent_id: str | None = None
    agent_version: str | None = None
    turn_id: str | None = None
    model: ModelSpec | None = None
    prompt_version: str | None = None
    tool_registry: list[ToolRegistryEntry] = Field(default_factory=list)
    mcp_servers: list[MCPServerInfo] = Field(default_factory=list)
    parent_run_id: str | None = None
    root_run_id: str | None = None
    depth: int = 0


class RequestedModel(Record):
    """A framework's model call as the workflow scheduled it: which model, how, offered what."""

    provider: str
    model: str
    parameters: dict[str, Any] = Field(default_factory=dict)
    prompt_version: str | None = None
    tools_offered: list[str] = Field(default_factory=list)
    # Offered tools that run inside the workflow (OpenAI function tools, handoffs), as this
    # worker declares them: the mirror lists them in the run's tool registry.
    in_workflow: list[ToolRegistryEntry] = Field(default_factory=list)


class CallHeader(CallOrigin):
    """Carried by every scheduled activity (persisted in ActivityTaskScheduled.header)."""

    approval: Approval = Field(default_factory=lambda: Approval(state=ApprovalState.NOT_REQUIRED))
    run_id: str
    turn_id: str | None = None
    # A framework's model request: the model requested (the result says the rest).
    model: RequestedModel | None = None


class JournalEntry(Record):
    """What the activity side records that history cannot hold: attempts and artifacts."""

    kind: Literal["attempt", "artifact"]
    run_id: str
    tool_call_id: str
    temporal_run_id: str | None = None  # the Temporal run whose worker ran the attempt
    attempt: Attempt | None = None
    artifact: Artifact | None = None


# Human control: approval signals, and what the run writes into history about them.

APPROVE_SIGNAL = "runrecord.approve"
DENY_SIGNAL = "runrecord.deny"
ROLLBACK_SIGNAL = "runrecord.rollback"
SUB_AGENT_CALLS_SIGNAL = "runrecord.sub-agent-calls"
OPERATION_SIGNAL = "runrecord.operation"
DECISION_QUERY = "runrecord.decision"
PENDING_QUERY = "runrecord.approvals"
EVENT_MEMO_KEY = "runrecord.event"
PENDING_MEMO_KEY = "runrecord.pending"


class ErrorType(StrEnum):
    """The ``ApplicationError`` types runrecord raises: a run's failure says which one."""

    TOOL_DENIED = "ToolDenied"
    APPROVAL_EXPIRED = "ApprovalExpired"
    APPROVAL_MISSING = "ApprovalMissing"
    ROLLED_BACK = "RolledBack"
    ROLLBACK_INCOMPLETE = "RollbackIncomplete"
    MCP_SERVER_NOT_REGISTERED = "MCPServerNotRegistered"
    MCP_SERVER_UNAVAILABLE = "MCPServerUnavailable"
    MCP_INVALID_SCHEMA = "MCPInvalidSchema"
    MCP_SCHEMA_DRIFT = "MCPSchemaDrift"
    MCP_INVALID_RESULT = "MCPInvalidResult"


# The failure types a run ends with when runrecord ends it, and the status each one means.
FAILURE_STATUS: dict[str, FinalStatus] = {
    ErrorType.TOOL_DENIED: FinalStatus.ESCALATED,
    ErrorType.APPROVAL_EXPIRED: FinalStatus.ESCALATED,
    ErrorType.ROLLED_BACK: FinalStatus.ROLLED_BACK,
    ErrorType.ROLLBACK_INCOMPLETE: FinalStatus.ROLLBACK_INCOMPLETE,
}


class ApprovalDecision(Record):
    """The payload of a ``runrecord.approve`` / ``runrecord.deny`` signal."""

    tool_call_id: str
    approver: str
    reason: str
    run_id: str | None = None
    signature: str | None = None
    nonce: str | None = None


class ApprovalRequest(Record):
    """A call waiting for a decision: what an approver sees before deciding."""

    run_id: str
    tool_call_id: str
    tool: str
    side_effect: SideEffect
    rule: str
    approvers: list[str]
    signatures_required: bool = False
    requested_at: datetime
    expires_at: datetime
    request_digest: str
    arguments: str
    agent_id: str | None = None


class RollbackRequest(Record):
    """The payload of a ``runrecord.rollback`` signal."""

    requested_by: str
    reason: str | None = None
    to_call: str | None = None


class CompensableCall(Record):
    """A completed side-effecting call a sub-agent run leaves behind, with what its
    compensator needs: the parent undoes it if the parent is rolled back later."""

    header: CallHeader
    depth: int
    arguments: list[str] = Field(default_factory=list)
    """base64 of each compensator argument's serialized Payload (the call's own arguments
    and result, as many as the compensator takes)."""
    task_queue: str
    schedule_to_close_ms: int | None = None
    start_to_close_ms: int | None = None
    heartbeat_ms: int | None = None
    retry_policy: RetryPolicy | None = None


class SubAgentCalls(Record):
    """The payload of a ``runrecord.sub-agent-calls`` signal: a sub-agent run, as it closes,
    tells its parent which of its (and its own sub-agents') calls are still in effect."""

    run_id: str
    calls: list[CompensableCall] = Field(default_factory=list)


class OperationNote(Record):
    """The payload of a ``runrecord.operation`` signal: who did what to a pending call, for
    the operations whose author Temporal does not keep (an activity unpause). The sender's
    identity is the signal event's."""

    tool_call_id: str
    operation: str
    reason: str | None = None


class ControlEvent(Record):
    """One human-control event, upserted as memo ``runrecord.event`` so history holds it.

    kinds: ``requested`` (``call``), ``decided`` / ``expired`` / ``withdrawn`` (``call`` with
    its approval), ``rejected`` (``rejection``), ``rollback`` (``rollback``). ``signal`` is the
    1-based number of the approval signal that caused it, to find the sender's identity.
    """

    kind: str
    call: CallHeader | None = None
    rejection: ApprovalRejection | None = None
    rollback: Rollback | None = None
    signal: int | None = None


class DecisionOutcome(Record):
    """What the run did with one approval signal (answered by the ``runrecord.decision`` query)."""

    nonce: str
    applied: bool
    message: str
