"""The operator console: approvals inbox, runs, run inspector, diff and lineage in a browser.

Server-rendered pages (Starlette and Jinja2, every value escaped), no build step and no
CDN. Reading needs no identity; deciding needs one — a trusted header set by an
authenticating reverse proxy, or an approver's token from the policy file — and goes
through the same signal and checks as ``runrecord approve``.
"""

from runrecord.console._app import ConsoleConfig, create_app

__all__ = ["ConsoleConfig", "create_app"]
