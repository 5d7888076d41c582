"""Nudges: a worker tells a mirror in the same process that a run started or moved on.

The mirror also discovers runs through visibility; a nudge only saves it the wait.
Listeners must be cheap and thread-safe: nudges come from activity threads too.
"""

from __future__ import annotations

from collections.abc import Callable

Listener = Callable[[str, str], None]
_listeners: list[Listener] = []


def listen(listener: Listener) -> Callable[[], None]:
    """Call ``listener(workflow_id, temporal_run_id)`` on every nudge; returns the unsubscribe."""
    _listeners.append(listener)
    return lambda: _listeners.remove(listener) if listener in _listeners else None


def nudge(workflow_id: str, temporal_run_id: str = "") -> None:
    for listener in list(_listeners):
        listener(workflow_id, temporal_run_id)
