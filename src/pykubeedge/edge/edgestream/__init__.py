"""EdgeStream: the edge's end of the CloudStream tunnel (kubectl logs, exec, attach,
port-forward and the node's metrics, relayed to Edged's kubelet server).

    from pykubeedge.edge.edgestream import EdgeStream, EdgeStreamSettings

    hive.add_module(EdgeStream(EdgeStreamSettings.from_config(
        cfg, node_ip="10.0.0.5", local_server="127.0.0.1:10350")))
"""

from pykubeedge.edge.edgestream.edgestream import (
    HEADER_IP,
    HEADER_NODE,
    TUNNEL_PATH,
    EdgeStream,
    EdgeStreamSettings,
)

__all__ = ["HEADER_IP", "HEADER_NODE", "TUNNEL_PATH", "EdgeStream", "EdgeStreamSettings"]
