"""Two sets of tools for two workers of one client, and an agent either can run."""

from __future__ import annotations

from temporalio import activity, workflow

with workflow.unsafe.imports_passed_through():
    import runrecord


@runrecord.tool("read")
@activity.defn
async def read_inbox(folder: str) -> str:
    return f"read {folder}"


@runrecord.tool("payment")
@activity.defn
async def pay_invoice(invoice: str) -> str:
    return f"paid {invoice}"


@runrecord.agent("greeter", version="1")
@workflow.defn
class Greeter:
    @workflow.run
    async def run(self, name: str) -> str:
        return f"hello {name}"


MAIL_TOOLS = [read_inbox]
PAYMENT_TOOLS = [pay_invoice]
