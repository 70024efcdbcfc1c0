"""CloudStream: kubectl logs, exec, attach, port-forward and the nodes' metrics for edge
pods, through each edge node's EdgeStream tunnel, without iptables (docs/streams.md).

    from pykubeedge.cloud.cloudstream import CloudStream, Fallback, tls_contexts
"""

from pykubeedge.cloud.cloudstream.cloudstream import CloudStream, Fallback, StreamTLS, tls_contexts

__all__ = ["CloudStream", "Fallback", "StreamTLS", "tls_contexts"]
