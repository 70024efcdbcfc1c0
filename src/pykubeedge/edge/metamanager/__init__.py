"""MetaManager: the edge database, the message rules between Edged, EdgeHub and the cloud,
and MetaServer, the local Kubernetes-compatible read API.

    store = await MetaStore.open(db)      # db: the process's pykubeedge.edge.dbm.Database
    hive.add_module(MetaManager(store, remote_query_timeout=60,
                                metaserver=MetaServer(store, port=10550)))
"""

from pykubeedge.core.errors import StoreClosedError, StoreError
from pykubeedge.edge.metamanager.dao import DeleteOutcome, MetaStore
from pykubeedge.edge.metamanager.feed import Change, ChangeFeed, ChangeType, RevisionExpired
from pykubeedge.edge.metamanager.manager import MetaManager
from pykubeedge.edge.metamanager.metaserver import MetaServer

__all__ = [
    "Change",
    "ChangeFeed",
    "ChangeType",
    "DeleteOutcome",
    "MetaManager",
    "MetaServer",
    "MetaStore",
    "RevisionExpired",
    "StoreClosedError",
    "StoreError",
]
