"""Interceptors, the worker/plugin factory and the embedded dev server launcher."""

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
