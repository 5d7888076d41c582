"""query indexes and SQL views

Indexes for the operator's questions (`runrecord runs|diff|artifacts|lineage|cost`), and on
PostgreSQL the views that answer the same questions in SQL (docs/records.md). The views use
PostgreSQL's JSON operators and LATERAL, so SQLite (dev/demo only) gets the indexes but no views.

A later migration that alters or drops a column one of these views reads must drop the view
first and create it again afterwards (PostgreSQL refuses otherwise).
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"

# A call in one of these approval states never ran (the CLI's NOT_LET_RUN).
_NOT_LET_RUN = "('requested', 'denied', 'expired')"

# Indexes of 0001 that get INCLUDE columns on PostgreSQL: (name, table, columns, include).
_COVERING = [
    ("ix_runs_started_at", "runs", ["started_at"], ["run_id", "agent_id", "root_run_id"]),
    ("ix_runs_root_run_id", "runs", ["root_run_id"], ["run_id", "parent_run_id"]),
    (
        "ix_tool_calls_run_event",
        "tool_calls",
        ["run_id", "scheduled_event_id"],
        ["tool", "side_effect", "approval_state", "mcp_server", "cost"],
    ),
]

MCP_SERVERS_FUNCTION = """
CREATE FUNCTION runrecord_mcp_servers(registry jsonb) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(array_agg(DISTINCT entry ->> 'server')
                    FILTER (WHERE entry ->> 'server' IS NOT NULL), '{}')
    FROM jsonb_array_elements(
        CASE WHEN jsonb_typeof(registry) = 'array' THEN registry ELSE '[]' END) AS entry
$$
"""

VIEWS: dict[str, str] = {
    # One line per run: the columns of `runrecord runs --json`, with own and rolled-up cost.
    "run_summary": """
        SELECT r.run_id, r.agent_id, r.agent_version, r.turn_id, r.final_status,
               r.model ->> 'name' AS model, r.prompt_version,
               r.parent_run_id, r.root_run_id, r.depth, r.started_at, r.ended_at,
               floor(extract(epoch FROM (r.ended_at - r.started_at)) * 1000)::bigint
                   AS duration_ms,
               (SELECT count(*) FROM tool_calls c WHERE c.run_id = r.run_id) AS tool_calls,
               (SELECT coalesce(sum(c.cost), 0) FROM tool_calls c WHERE c.run_id = r.run_id)
                   AS own_cost,
               (WITH RECURSIVE sub(run_id) AS (
                    SELECT r.run_id
                    UNION
                    SELECT d.run_id FROM runs d JOIN sub ON d.parent_run_id = sub.run_id)
                SELECT coalesce(sum(c.cost), 0)
                FROM sub JOIN tool_calls c ON c.run_id = sub.run_id) AS total_cost
        FROM runs r
    """,
    # Tool calls that were let run (not requested, denied or expired), with their run's agent.
    "executed_calls": f"""
        SELECT c.run_id, r.agent_id, r.turn_id, r.started_at AS run_started_at,
               c.tool_call_id, c.tool, c.side_effect, c.mcp_server, c.status,
               c.approval_state, c.attempts, c.cost, c.scheduled_at
        FROM tool_calls c JOIN runs r ON r.run_id = c.run_id
        WHERE c.approval_state NOT IN {_NOT_LET_RUN}
    """,
    "runs_that_wrote": f"""
        SELECT r.run_id, r.agent_id, r.turn_id, r.final_status, r.started_at,
               (SELECT count(*) FROM tool_calls c
                WHERE c.run_id = r.run_id AND c.side_effect = 'write'
                  AND c.approval_state NOT IN {_NOT_LET_RUN}) AS writes
        FROM runs r
        WHERE EXISTS (SELECT 1 FROM tool_calls c
                      WHERE c.run_id = r.run_id AND c.side_effect = 'write'
                        AND c.approval_state NOT IN {_NOT_LET_RUN})
    """,
    # Every call that needed a decision, and who or which rule decided.
    "approvals": """
        SELECT c.run_id, r.agent_id, r.turn_id, c.tool_call_id, c.tool, c.side_effect,
               c.approval_state, c.approval ->> 'decidedBy' AS decided_by,
               (c.approval ->> 'decidedAt')::timestamptz AS decided_at,
               c.approval ->> 'reason' AS reason, c.approval ->> 'rule' AS rule,
               c.status, c.scheduled_at
        FROM tool_calls c JOIN runs r ON r.run_id = c.run_id
        WHERE c.approval_state <> 'not_required'
    """,
    "denied_approvals": """
        SELECT run_id, agent_id, turn_id, tool_call_id, tool, side_effect, decided_by,
               decided_at, reason, rule, status, scheduled_at
        FROM approvals WHERE approval_state = 'denied'
    """,
    # usage 'called': the run's calls went to the server; 'available': its tool registry
    # offered tools of that server when the run started.
    "mcp_usage": f"""
        SELECT c.run_id, r.agent_id, r.turn_id, r.started_at, c.mcp_server,
               'called' AS usage, count(*) AS calls
        FROM tool_calls c JOIN runs r ON r.run_id = c.run_id
        WHERE c.mcp_server IS NOT NULL AND c.approval_state NOT IN {_NOT_LET_RUN}
        GROUP BY c.run_id, r.agent_id, r.turn_id, r.started_at, c.mcp_server
        UNION ALL
        SELECT r.run_id, r.agent_id, r.turn_id, r.started_at, e.entry ->> 'server',
               'available', count(*)
        FROM runs r CROSS JOIN LATERAL jsonb_array_elements(r.tool_registry) AS e(entry)
        WHERE e.entry ->> 'server' IS NOT NULL
        GROUP BY r.run_id, r.agent_id, r.turn_id, r.started_at, e.entry ->> 'server'
    """,
    "turn_artifacts": """
        SELECT a.turn_id, a.artifact_id, a.kind, a.uri, a.sha256, a.size, a.created_at,
               a.run_id, coalesce(r.agent_id, a.agent_id) AS agent_id, r.parent_run_id,
               r.depth, a.tool_call_id, a.attempt, c.tool, c.side_effect, c.status,
               c.approval_state, c.approval ->> 'decidedBy' AS decided_by
        FROM artifacts a
        LEFT JOIN runs r ON r.run_id = a.run_id
        LEFT JOIN tool_calls c ON c.run_id = a.run_id AND c.tool_call_id = a.tool_call_id
    """,
    # One line per artifact and consumer (consumer columns null when nothing consumed it;
    # consumer_tool_call_id null when it was passed to a sub-agent run as a whole).
    "artifact_lineage": """
        SELECT a.artifact_id, a.kind, a.uri, a.sha256, a.turn_id,
               chain.root_run_id, chain.agent_path, chain.run_path,
               a.run_id, coalesce(r.agent_id, a.agent_id) AS agent_id, a.tool_call_id,
               c.tool, c.side_effect, c.status, c.approval_state,
               c.approval ->> 'decidedBy' AS decided_by,
               e.consumer_run_id, cr.agent_id AS consumer_agent_id,
               nullif(e.consumer_tool_call_id, '') AS consumer_tool_call_id,
               cc.tool AS consumer_tool, cc.status AS consumer_status
        FROM artifacts a
        LEFT JOIN runs r ON r.run_id = a.run_id
        LEFT JOIN tool_calls c ON c.run_id = a.run_id AND c.tool_call_id = a.tool_call_id
        LEFT JOIN LATERAL (
            WITH RECURSIVE up(run_id, agent_id, parent_run_id, n) AS (
                SELECT u.run_id, u.agent_id, u.parent_run_id, 0
                FROM runs u WHERE u.run_id = a.run_id
                UNION
                SELECT p.run_id, p.agent_id, p.parent_run_id, up.n + 1
                FROM runs p JOIN up ON p.run_id = up.parent_run_id
                WHERE up.n < 64)
            SELECT string_agg(up.agent_id, ' > ' ORDER BY up.n DESC) AS agent_path,
                   string_agg(up.run_id, ' > ' ORDER BY up.n DESC) AS run_path,
                   (array_agg(up.run_id ORDER BY up.n DESC))[1] AS root_run_id
            FROM up
        ) AS chain ON true
        LEFT JOIN lineage_edges e ON e.artifact_id = a.artifact_id
        LEFT JOIN runs cr ON cr.run_id = e.consumer_run_id
        LEFT JOIN tool_calls cc
               ON cc.run_id = e.consumer_run_id AND cc.tool_call_id = e.consumer_tool_call_id
    """,
    # cost: what the agent's runs spent themselves; total: with the sub-agent runs they started.
    "cost_by_agent": """
        WITH RECURSIVE own AS (
            SELECT run_id, count(*) AS calls, sum(cost) AS cost
            FROM tool_calls GROUP BY run_id),
        up(run_id, ancestor) AS (
            SELECT run_id, run_id FROM runs
            UNION
            SELECT up.run_id, p.parent_run_id
            FROM up JOIN runs p ON p.run_id = up.ancestor
            WHERE p.parent_run_id IS NOT NULL),
        total AS (
            SELECT up.ancestor AS run_id, sum(own.cost) AS cost
            FROM up JOIN own ON own.run_id = up.run_id GROUP BY up.ancestor)
        SELECT r.agent_id, count(*) AS runs, coalesce(sum(own.calls), 0) AS calls,
               coalesce(sum(own.cost), 0) AS cost, coalesce(sum(total.cost), 0) AS total
        FROM runs r
        LEFT JOIN own ON own.run_id = r.run_id
        LEFT JOIN total ON total.run_id = r.run_id
        GROUP BY r.agent_id
    """,
    "cost_by_model": """
        SELECT model, count(DISTINCT run_id) AS runs, count(*) AS calls, sum(cost) AS cost,
               sum(cost) AS total, sum(input_tokens) AS input_tokens,
               sum(output_tokens) AS output_tokens
        FROM model_calls GROUP BY model
    """,
    "cost_by_turn": """
        SELECT r.turn_id, count(DISTINCT r.run_id) AS runs, count(c.tool_call_id) AS calls,
               coalesce(sum(c.cost), 0) AS cost, coalesce(sum(c.cost), 0) AS total
        FROM runs r LEFT JOIN tool_calls c ON c.run_id = r.run_id
        GROUP BY r.turn_id
    """,
    "cost_by_tool": """
        SELECT tool, count(DISTINCT run_id) AS runs, count(*) AS calls, sum(cost) AS cost,
               sum(cost) AS total
        FROM tool_calls GROUP BY tool
    """,
    # The run `runrecord diff BAD` compares with when GOOD is not given.
    "last_good_run": """
        SELECT r.run_id, r.agent_id, r.final_status, r.started_at,
               (SELECT g.run_id FROM runs g
                WHERE g.agent_id = r.agent_id AND g.final_status = 'succeeded'
                  AND g.started_at < r.started_at AND g.run_id <> r.run_id
                ORDER BY g.started_at DESC, g.run_id DESC LIMIT 1) AS good_run_id
        FROM runs r
    """,
}


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"

    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.create_index("ix_runs_agent_started", ["agent_id", "started_at"], unique=False)
        batch_op.create_index(
            "ix_runs_status_started", ["final_status", "started_at"], unique=False
        )
        batch_op.create_index(
            "ix_runs_prompt_version",
            ["prompt_version"],
            unique=False,
            postgresql_ops={"prompt_version": "varchar_pattern_ops"},
        )
    with op.batch_alter_table("artifacts", schema=None) as batch_op:
        batch_op.create_index("ix_artifacts_run_call", ["run_id", "tool_call_id"], unique=False)
        # hash on PostgreSQL: a btree entry cannot hold a URI longer than ~2.7 kB.
        batch_op.create_index("ix_artifacts_uri", ["uri"], unique=False, postgresql_using="hash")
    if not postgres:
        return
    op.create_index(
        "ix_runs_model_started",
        "runs",
        [sa.text("(model ->> 'name')"), "started_at"],
        unique=False,
    )
    # Time windows, delegation trees and cost roll-ups are read from these indexes alone.
    for name, table, columns, include in _COVERING:
        op.drop_index(name, table_name=table)
        op.create_index(name, table, columns, unique=False, postgresql_include=include)
    op.create_index(
        "ix_model_calls_run_cost",
        "model_calls",
        ["run_id"],
        unique=False,
        postgresql_include=["model", "cost", "input_tokens", "output_tokens"],
    )
    # The MCP servers a run's registry offered, as an array: a GIN index on it carries
    # element statistics, so the planner knows how common a server is (jsonb containment
    # on the whole registry would be estimated at a flat 1%).
    op.execute(MCP_SERVERS_FUNCTION)
    op.create_index(
        "ix_runs_mcp_servers",
        "runs",
        [sa.text("runrecord_mcp_servers(tool_registry)")],
        unique=False,
        postgresql_using="gin",
    )
    for name, body in VIEWS.items():
        op.execute(f"CREATE VIEW {name} AS {body}")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name in reversed(list(VIEWS)):
            op.execute(f"DROP VIEW IF EXISTS {name}")
        op.drop_index("ix_runs_mcp_servers", table_name="runs")
        op.drop_index("ix_model_calls_run_cost", table_name="model_calls")
        op.execute("DROP FUNCTION IF EXISTS runrecord_mcp_servers(jsonb)")
        for name, table, columns, _ in _COVERING:
            op.drop_index(name, table_name=table)
            op.create_index(name, table, columns, unique=False)
        op.drop_index("ix_runs_model_started", table_name="runs")
    with op.batch_alter_table("artifacts", schema=None) as batch_op:
        batch_op.drop_index("ix_artifacts_uri")
        batch_op.drop_index("ix_artifacts_run_call")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index("ix_runs_prompt_version")
        batch_op.drop_index("ix_runs_status_started")
        batch_op.drop_index("ix_runs_agent_started")
