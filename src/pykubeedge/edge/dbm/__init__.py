"""pykubeedge.edge.dbm: edgecore.db, shared by every edge module (upstream
``edge/pkg/common/dbm``). One writer thread batches everyone's writes; each module keeps its
own tables behind a small DAO (``docs/edge-database.md``)::

    db = await Database.open(cfg.database.dataSource)
    store = await MetaStore.open(db)        # MetaManager: meta, meta_v2
    outbox = await Outbox.open(db)          # EdgeHub: edgehub_outbox
"""

from pykubeedge.core.errors import StoreClosedError, StoreError
from pykubeedge.edge.dbm.dao import DAO, open_for
from pykubeedge.edge.dbm.database import BUSY_TIMEOUT_MS, Database, snapshot
from pykubeedge.edge.dbm.schema import Schema, columns

__all__ = [
    "BUSY_TIMEOUT_MS",
    "DAO",
    "Database",
    "Schema",
    "StoreClosedError",
    "StoreError",
    "columns",
    "open_for",
    "snapshot",
]
