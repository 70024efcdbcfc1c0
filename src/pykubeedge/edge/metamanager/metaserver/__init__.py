"""MetaServer: the edge's local, Kubernetes-compatible read API (upstream
``edge/pkg/metamanager/metaserver``), served from MetaManager's store online and offline.

- ``server``: the HTTP server (discovery, get / list / watch, Tables for kubectl);
- ``selectors``: label and field selectors;
- ``tables``: server-side printing (``meta.k8s.io/v1`` Tables).

    async with MetaServer(store, port=10550) as server: ...
"""

from pykubeedge.edge.metamanager.metaserver.server import MetaServer

__all__ = ["MetaServer"]
