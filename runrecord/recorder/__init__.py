"""The records database: tables, migrations, the history mirror, and the operator's questions."""

from runrecord.recorder._blobs import (
    BlobStore,
    BlobStoreError,
    Collected,
    DatabaseBlobStore,
    FolderBlobStore,
    S3BlobStore,
    open_blob_store,
    referenced_blobs,
)
from runrecord.recorder._database import (
    check_not_newer,
    current_revision,
    head_revision,
    open_engine,
    require_current,
    upgrade,
)
from runrecord.recorder._diff import Change, RunDiff, diff_runs, execution_order, last_good_run
from runrecord.recorder._lineage import Lineage, lineage
from runrecord.recorder._mirror import Mirror
from runrecord.recorder._projection import RunChain, RunProjection
from runrecord.recorder._queries import (
    ArtifactOrigin,
    CallRef,
    CostDimension,
    CostLine,
    RunFilter,
    RunSummary,
    cost_by,
    find_runs,
    parse_when,
    turn_artifacts,
)
from runrecord.recorder._shipper import NOTIFY_CHANNEL, Shipper, ship_journal
from runrecord.recorder._store import apply_journal, load_run, load_tree, save_projection

__all__ = [
    "ArtifactOrigin",
    "BlobStore",
    "BlobStoreError",
    "CallRef",
    "Change",
    "Collected",
    "DatabaseBlobStore",
    "FolderBlobStore",
    "S3BlobStore",
    "CostDimension",
    "CostLine",
    "Lineage",
    "Mirror",
    "NOTIFY_CHANNEL",
    "RunDiff",
    "RunFilter",
    "RunChain",
    "RunProjection",
    "RunSummary",
    "Shipper",
    "apply_journal",
    "check_not_newer",
    "cost_by",
    "current_revision",
    "diff_runs",
    "execution_order",
    "find_runs",
    "head_revision",
    "last_good_run",
    "lineage",
    "load_run",
    "load_tree",
    "open_blob_store",
    "open_engine",
    "parse_when",
    "referenced_blobs",
    "require_current",
    "save_projection",
    "ship_journal",
    "turn_artifacts",
    "upgrade",
]
