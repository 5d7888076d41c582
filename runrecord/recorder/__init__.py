"""The records database: tables, migrations, the history mirror and reading run records."""

from runrecord.recorder._blobs import BlobStore, Collected
from runrecord.recorder._database import (
    check_not_newer,
    current_revision,
    head_revision,
    open_engine,
    require_current,
    upgrade,
)
from runrecord.recorder._mirror import Mirror
from runrecord.recorder._projection import RunProjection
from runrecord.recorder._store import apply_journal, load_run, load_tree, save_projection

__all__ = [
    "BlobStore",
    "Collected",
    "Mirror",
    "RunProjection",
    "apply_journal",
    "check_not_newer",
    "current_revision",
    "head_revision",
    "load_run",
    "load_tree",
    "open_engine",
    "require_current",
    "save_projection",
    "upgrade",
]
