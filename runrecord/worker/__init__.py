"""Interceptors, the worker/plugin factory and the embedded dev server launcher."""

from typing import TYPE_CHECKING

from runrecord._lazy import lazy_exports

if TYPE_CHECKING:  # the same names, for type checkers and IDEs
    from runrecord._contract import AWAITING_ATTR, SEARCH_ATTRIBUTES
    from runrecord.worker._devserver import DevServer, free_port, port_open, temporal_binary
    from runrecord.worker._interceptor import (
        RunRecordInterceptor,
        current_turn,
        decode_header,
        encode_header,
        starting,
        turn,
    )
    from runrecord.worker._journal import Journal, JournalLine, journal_files, read_from
    from runrecord.worker._plugin import RunRecordPlugin

__getattr__, __dir__, _EXPORTS = lazy_exports(
    __name__,
    {
        "runrecord._contract": ("AWAITING_ATTR", "SEARCH_ATTRIBUTES"),
        "runrecord.worker._devserver": ("DevServer", "free_port", "port_open", "temporal_binary"),
        "runrecord.worker._interceptor": (
            "RunRecordInterceptor",
            "current_turn",
            "decode_header",
            "encode_header",
            "starting",
            "turn",
        ),
        "runrecord.worker._journal": ("Journal", "JournalLine", "journal_files", "read_from"),
        "runrecord.worker._plugin": ("RunRecordPlugin",),
    },
)
__all__ = list(_EXPORTS)
