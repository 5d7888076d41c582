"""calls of agent frameworks: the agent that made a call, its framework, activity type,
toolset and trace; model calls' cache and reasoning tokens, finish reason, tools offered and
whether a price was known
"""

import sqlalchemy as sa
from alembic import op

from runrecord.recorder.migrations._columns import ID, INT, count, flag, json_list, nullable

revision = "0011"
down_revision = "0010"

_CALL_TEXT = {
    "agent_id": 255,
    "framework": 64,
    "activity_type": 255,
    "toolset": 255,
    "trace_id": 64,
    "span_id": 64,
}
_TOKENS = ("cache_read_tokens", "cache_write_tokens", "reasoning_tokens")


def upgrade() -> None:
    with op.batch_alter_table("tool_calls") as batch_op:
        for name, length in _CALL_TEXT.items():
            batch_op.add_column(nullable(name, sa.String(length=length)))
    with op.batch_alter_table("model_calls") as batch_op:
        for name in _TOKENS:
            batch_op.add_column(count(name, INT))
        batch_op.add_column(nullable("finish_reason", ID))
        batch_op.add_column(json_list("tools_offered"))
        batch_op.add_column(flag("priced", default=True))


def downgrade() -> None:
    with op.batch_alter_table("model_calls") as batch_op:
        for name in (*_TOKENS, "finish_reason", "tools_offered", "priced"):
            batch_op.drop_column(name)
    with op.batch_alter_table("tool_calls") as batch_op:
        for name in _CALL_TEXT:
            batch_op.drop_column(name)
