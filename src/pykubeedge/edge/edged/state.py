"""What Edged's parts share (kubelet keeps these on its ``Kubelet`` struct): the node's name,
the runtime and what is known of it, the host facts, MetaManager, and time.

The node status manager keeps ``host`` and the runtime facts fresh; the pod manager, the PLEG
and the lease read them::

    state = EdgedState(node_name="edge-1", runtime=runtime, clock=time.time,
                       sleep=asyncio.sleep, jitter=random.random)
    state.meta = MetaClient(ctx, timeout=60)     # once the module runs
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pykubeedge.beehive import HiveClosedError
from pykubeedge.core.clock import Sleep, TimeSource
from pykubeedge.edge.edged.events import EventRecorder
from pykubeedge.edge.edged.images import ImageManager
from pykubeedge.edge.edged.metaclient import MetaClient
from pykubeedge.edge.edged.node import HostInfo
from pykubeedge.edge.edged.runtime import Runtime, RuntimeVersion
from pykubeedge.edge.edged.volumemanager import VolumeManager

log = logging.getLogger(__name__)


@dataclass
class EdgedState:
    node_name: str
    runtime: Runtime
    clock: TimeSource
    """Wall-clock seconds (timestamps in statuses, the Lease's renewTime)."""
    sleep: Sleep
    jitter: Callable[[], float]
    retry_interval: float = 10.0
    backoff_cap: float = 7.0
    """Longest wait between retries of registration and of the first pod list."""
    host: HostInfo | None = None
    runtime_version: RuntimeVersion = field(
        default_factory=lambda: RuntimeVersion("unknown", "unknown"))
    runtime_error: str = ""
    crash_backoff_initial: float = 10.0
    crash_backoff_cap: float = 300.0
    crash_backoff_reset: float = 600.0
    pod_logs_dir: Path | None = None
    cluster_dns: tuple[str, ...] = ()
    cluster_domain: str = "cluster.local"
    volumes: VolumeManager = field(default_factory=lambda: VolumeManager(None))
    _meta: MetaClient | None = None
    _recorder: EventRecorder | None = None
    _images: ImageManager | None = None

    @property
    def has_recorder(self) -> bool:
        return self._recorder is not None

    @property
    def recorder(self) -> EventRecorder:
        """The event recorder (set when the module starts)."""
        assert self._recorder is not None, "Edged is not started"
        return self._recorder

    @recorder.setter
    def recorder(self, recorder: EventRecorder) -> None:
        self._recorder = recorder

    @property
    def images(self) -> ImageManager:
        """The image manager (set when the module starts)."""
        assert self._images is not None, "Edged is not started"
        return self._images

    @images.setter
    def images(self, images: ImageManager) -> None:
        self._images = images

    def allocatable(self) -> dict[str, int]:
        """The node's allocatable cpu (millicores), memory and ephemeral storage (bytes)."""
        if self.host is None:
            return {}
        return {"cpu": self.host.cpu * 1000,
                "memory": max(self.host.memory_bytes - 100 * 1024 * 1024, 0),
                "ephemeral-storage": self.host.ephemeral_storage_bytes
                - int(self.host.ephemeral_storage_bytes * 0.1)}

    @property
    def meta(self) -> MetaClient:
        """MetaManager, as Edged talks to it (set when the module starts)."""
        assert self._meta is not None, "Edged is not started"
        return self._meta

    @meta.setter
    def meta(self, client: MetaClient) -> None:
        self._meta = client

    def host_ip(self) -> str:
        return self.host.internal_ip if self.host is not None else "127.0.0.1"

    async def guard(self, what: str, loop: Callable[[], Awaitable[Any]]) -> None:
        """Run a background loop; a bug in it is logged and the loop restarted, so one
        failure never takes the module (and its pods) down."""
        while True:
            try:
                await loop()
                return
            except asyncio.CancelledError:
                raise
            except HiveClosedError:
                return
            except Exception:
                log.exception("edged: %s loop failed; restarting it", what)
                await self.sleep(self.retry_interval)
