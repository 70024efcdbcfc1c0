"""MetaManager: the edge database, the message rules between Edged, EdgeHub and the cloud,
and MetaServer, the local Kubernetes-compatible read API.

    store = await MetaStore.open("/var/lib/kubeedge/edgecore.db")
    hive.add_module(MetaManager(store, remote_query_timeout=60,
                                metaserver=MetaServer(store, port=10550)))
"""

from pykubeedge.edge.metamanager.manager import MetaManager
from pykubeedge.edge.metamanager.metaserver import MetaServer
from pykubeedge.edge.metamanager.store import (
    Change,
    ChangeFeed,
    ChangeType,
    DeleteOutcome,
    MetaStore,
    RevisionExpired,
    StoreClosedError,
    StoreError,
)

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
