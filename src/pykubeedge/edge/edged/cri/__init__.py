"""Edged on a real container runtime: CRI (``runtime.v1`` gRPC) to containerd.

- :class:`CRIRuntime` (``remote``): the :class:`~pykubeedge.edge.edged.runtime.Runtime`
  protocol over a CRI unix socket.
- :class:`PrivateContainerd` (``containerd``): a containerd in a private directory, for tests,
  benchmarks and ``keadm local-up``.
- ``localimages``: busybox and pause images made from ``/bin/busybox`` (no registry needed).

``api.proto`` is the subset of upstream's ``runtime.v1`` used here; ``api_pb2*.py`` are
generated from it and committed (the command is in the .proto's header).
"""

from pykubeedge.edge.edged.cri.containerd import PrivateContainerd
from pykubeedge.edge.edged.cri.localimages import (
    BUSYBOX_IMAGES,
    PAUSE_IMAGE,
    build_local_images,
    import_images,
)
from pykubeedge.edge.edged.cri.remote import DEFAULT_ENDPOINT, CRIRuntime, parse_endpoint

__all__ = [
    "BUSYBOX_IMAGES",
    "DEFAULT_ENDPOINT",
    "PAUSE_IMAGE",
    "CRIRuntime",
    "PrivateContainerd",
    "build_local_images",
    "import_images",
    "parse_endpoint",
]
