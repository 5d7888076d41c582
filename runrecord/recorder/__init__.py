"""The records database: tables, migrations, the history mirror, and the operator's questions."""

from typing import TYPE_CHECKING

from runrecord._lazy import lazy_exports

if TYPE_CHECKING:  # the same names, for type checkers and IDEs
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

__getattr__, __dir__, _EXPORTS = lazy_exports(
    __name__,
    {
        "runrecord.recorder._blobs": (
            "BlobStore",
            "BlobStoreError",
            "Collected",
            "DatabaseBlobStore",
            "FolderBlobStore",
            "S3BlobStore",
            "open_blob_store",
            "referenced_blobs",
        ),
        "runrecord.recorder._database": (
            "check_not_newer",
            "current_revision",
            "head_revision",
            "open_engine",
            "require_current",
            "upgrade",
        ),
        "runrecord.recorder._diff": (
            "Change",
            "RunDiff",
            "diff_runs",
            "execution_order",
            "last_good_run",
        ),
        "runrecord.recorder._lineage": ("Lineage", "lineage"),
        "runrecord.recorder._mirror": ("Mirror",),
        "runrecord.recorder._projection": ("RunChain", "RunProjection"),
        "runrecord.recorder._queries": (
            "ArtifactOrigin",
            "CallRef",
            "CostLine",
            "RunFilter",
            "RunSummary",
            "cost_by",
            "find_runs",
            "parse_when",
            "turn_artifacts",
        ),
        "runrecord.recorder._shipper": ("NOTIFY_CHANNEL", "Shipper", "ship_journal"),
        "runrecord.recorder._store": ("apply_journal", "load_run", "load_tree", "save_projection"),
        "runrecord.records": ("CostDimension",),
    },
)
__all__ = list(_EXPORTS)
