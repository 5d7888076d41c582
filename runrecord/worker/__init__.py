"""Interceptors, the worker/plugin factory and the embedded dev server launcher."""

from typing import TYPE_CHECKING

from runrecord._lazy import lazy_exports

_EXPORTS = {
    "AWAITING_ATTR": "runrecord._contract",
    "SEARCH_ATTRIBUTES": "runrecord._contract",
    "DevServer": "runrecord.worker._devserver",
    "Journal": "runrecord.worker._journal",
    "JournalLine": "runrecord.worker._journal",
    "RunRecordInterceptor": "runrecord.worker._interceptor",
    "RunRecordPlugin": "runrecord.worker._plugin",
    "current_turn": "runrecord.worker._interceptor",
    "decode_header": "runrecord.worker._interceptor",
    "encode_header": "runrecord.worker._interceptor",
    "free_port": "runrecord.worker._devserver",
    "journal_files": "runrecord.worker._journal",
    "port_open": "runrecord.worker._devserver",
    "read_from": "runrecord.worker._journal",
    "starting": "runrecord.worker._interceptor",
    "temporal_binary": "runrecord.worker._devserver",
    "turn": "runrecord.worker._interceptor",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
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

__all__ = [
    "AWAITING_ATTR",
    "SEARCH_ATTRIBUTES",
    "DevServer",
    "Journal",
    "JournalLine",
    "RunRecordInterceptor",
    "RunRecordPlugin",
    "current_turn",
    "decode_header",
    "encode_header",
    "free_port",
    "journal_files",
    "port_open",
    "read_from",
    "starting",
    "temporal_binary",
    "turn",
]
