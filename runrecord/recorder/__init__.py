"""The records database: tables, migrations, the history mirror, and the operator's questions."""

from typing import TYPE_CHECKING

from runrecord._lazy import lazy_exports

_EXPORTS = {
    "ArtifactOrigin": "runrecord.recorder._queries",
    "BlobStore": "runrecord.recorder._blobs",
    "BlobStoreError": "runrecord.recorder._blobs",
    "CallRef": "runrecord.recorder._queries",
    "Change": "runrecord.recorder._diff",
    "Collected": "runrecord.recorder._blobs",
    "DatabaseBlobStore": "runrecord.recorder._blobs",
    "FolderBlobStore": "runrecord.recorder._blobs",
    "S3BlobStore": "runrecord.recorder._blobs",
    "CostDimension": "runrecord.records",
    "CostLine": "runrecord.recorder._queries",
    "Lineage": "runrecord.recorder._lineage",
    "Mirror": "runrecord.recorder._mirror",
    "NOTIFY_CHANNEL": "runrecord.recorder._shipper",
    "RunDiff": "runrecord.recorder._diff",
    "RunFilter": "runrecord.recorder._queries",
    "RunChain": "runrecord.recorder._projection",
    "RunProjection": "runrecord.recorder._projection",
    "RunSummary": "runrecord.recorder._queries",
    "Shipper": "runrecord.recorder._shipper",
    "apply_journal": "runrecord.recorder._store",
    "check_not_newer": "runrecord.recorder._database",
    "cost_by": "runrecord.recorder._queries",
    "current_revision": "runrecord.recorder._database",
    "diff_runs": "runrecord.recorder._diff",
    "execution_order": "runrecord.recorder._diff",
    "find_runs": "runrecord.recorder._queries",
    "head_revision": "runrecord.recorder._database",
    "last_good_run": "runrecord.recorder._diff",
    "lineage": "runrecord.recorder._lineage",
    "load_run": "runrecord.recorder._store",
    "load_tree": "runrecord.recorder._store",
    "open_blob_store": "runrecord.recorder._blobs",
    "open_engine": "runrecord.recorder._database",
    "parse_when": "runrecord.recorder._queries",
    "referenced_blobs": "runrecord.recorder._blobs",
    "require_current": "runrecord.recorder._database",
    "save_projection": "runrecord.recorder._store",
    "ship_journal": "runrecord.recorder._shipper",
    "turn_artifacts": "runrecord.recorder._queries",
    "upgrade": "runrecord.recorder._database",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
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
