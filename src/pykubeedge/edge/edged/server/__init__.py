"""Edged's kubelet server (the read-only port EdgeStream relays to): logs, exec, attach,
port-forward, stats and metrics of this node's pods.

    from pykubeedge.edge.edged.server import KubeletServer

    async with KubeletServer(runtime, node_name="edge-1", port=10350) as server: ...
"""

from pykubeedge.edge.edged.server.server import (
    DEFAULT_ADDRESS,
    DEFAULT_READ_ONLY_PORT,
    KubeletServer,
)

__all__ = ["DEFAULT_ADDRESS", "DEFAULT_READ_ONLY_PORT", "KubeletServer"]
