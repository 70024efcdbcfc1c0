"""Edged on a real container runtime: CRI (``runtime.v1`` gRPC) to containerd.

:class:`CRIRuntime` (``remote``) is the :class:`~pykubeedge.edge.edged.runtime.Runtime`
protocol over a CRI unix socket. (The private containerd and the local busybox/pause images
that ``keadm local-up``, the benchmarks and the tests run it on are development tooling:
``pykubeedge.devcluster.containerd`` and ``.localimages``.)

``api.proto`` is the subset of upstream's ``runtime.v1`` used here; ``api_pb2*.py`` are
generated from it and committed (the command is in the .proto's header).
"""

from pykubeedge.edge.edged.cri.remote import DEFAULT_ENDPOINT, CRIRuntime, parse_endpoint

__all__ = [
    "DEFAULT_ENDPOINT",
    "CRIRuntime",
    "parse_endpoint",
]
