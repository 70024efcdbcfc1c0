"""Edged: the edge node's kubelet, as a beehive module.

Usage::

    from pykubeedge.edge.edged import Edged, FakeRuntime

    hive.add_module(Edged(node_name="edge-1", runtime=FakeRuntime()))
"""

from pykubeedge.edge.edged.edged import Edged
from pykubeedge.edge.edged.fake import ContainerScript, FakeRuntime
from pykubeedge.edge.edged.node import KUBERNETES_VERSION, HostInfo, kubelet_version, probe_host
from pykubeedge.edge.edged.runtime import (
    ContainerRuntimeError,
    ContainerSpec,
    ContainerState,
    ContainerStatus,
    ImagePullError,
    Mount,
    PodSandboxStatus,
    Runtime,
    RuntimeUnavailableError,
    RuntimeVersion,
    SandboxConfig,
    SandboxState,
)

__all__ = [
    "KUBERNETES_VERSION",
    "ContainerRuntimeError",
    "ContainerScript",
    "ContainerSpec",
    "ContainerState",
    "ContainerStatus",
    "Edged",
    "FakeRuntime",
    "HostInfo",
    "ImagePullError",
    "Mount",
    "PodSandboxStatus",
    "Runtime",
    "RuntimeUnavailableError",
    "RuntimeVersion",
    "SandboxConfig",
    "SandboxState",
    "kubelet_version",
    "probe_host",
]
