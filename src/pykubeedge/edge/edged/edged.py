"""Edged: the beehive module that is this node's kubelet.

It registers the Node, keeps its status and Lease fresh, runs the pods MetaManager hands it
(from the cloud, or from SQLite at start: edge autonomy) through a :class:`Runtime`, and
reports their status, always through MetaManager (``docs/edge-messages.md``)::

    hive.add_module(Edged(node_name="edge-1", runtime=FakeRuntime(),
                          node_labels={"site": "lab"}))

Its parts carry kubelet's names: the pod manager and pod workers (:mod:`.podmanager`,
:mod:`.podworker`), the PLEG (:mod:`.pleg`), the node status manager (:mod:`.nodestatus`) and
the node lease (:mod:`.lease`), sharing :class:`~.state.EdgedState`. Time is injected
(``clock``: wall seconds, ``sleep``) so tests run in fake time.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Final

from pykubeedge.beehive import BeehiveContext, RestartPolicy, RestartType, serve
from pykubeedge.core.clock import Sleep, TimeSource
from pykubeedge.core.constants import (
    EdgeGroup,
    EdgeModule,
    Operation,
    ResourceType,
)
from pykubeedge.core.errors import DecodeError
from pykubeedge.core.message import Message
from pykubeedge.core.resource import parse_edge
from pykubeedge.edge.edged.events import NORMAL, EventRecorder
from pykubeedge.edge.edged.fake import FakeRuntime
from pykubeedge.edge.edged.images import ImageManager
from pykubeedge.edge.edged.lease import NodeLease
from pykubeedge.edge.edged.metaclient import MetaClient
from pykubeedge.edge.edged.node import (
    DEFAULT_KUBELET_PORT,
    DEFAULT_MAX_PODS,
    DEFAULT_ROOT_DIR,
    KUBERNETES_VERSION,
    HostInfo,
    kubelet_version,
    probe_host,
)
from pykubeedge.edge.edged.nodestatus import NodeStatus
from pykubeedge.edge.edged.pleg import PLEG
from pykubeedge.edge.edged.podmanager import PodManager
from pykubeedge.edge.edged.podworker import PodWorker
from pykubeedge.edge.edged.runtime import (
    ContainerRuntimeError,
    Runtime,
)
from pykubeedge.edge.edged.state import EdgedState
from pykubeedge.edge.edged.staticpods import FILE_CHECK_FREQUENCY, StaticPods, StaticPodSource
from pykubeedge.edge.edged.volumemanager import VolumeManager

log = logging.getLogger(__name__)

NODE_STATUS_UPDATE_FREQUENCY: Final = 10.0
NODE_STATUS_REPORT_FREQUENCY: Final = 300.0
NODE_LEASE_DURATION_SECONDS: Final = 40
POD_STATUS_SYNC_PERIOD: Final = 10.0
RELIST_PERIOD: Final = 1.0
REQUEST_TIMEOUT: Final = 60.0
IMAGE_GC_PERIOD: Final = 300.0


class Edged:
    """The ``edged`` module (group ``edged``).

    Parameters (defaults as kubelet/KubeEdge): ``node_name`` (default: the host name),
    ``runtime``, ``node_labels`` (added to the built-in ones), ``kubernetes_version``,
    ``node_status_update_frequency`` 10 s, ``node_status_report_frequency`` 300 s,
    ``lease_duration_seconds`` 40 (renewed every quarter: 10 s), ``pod_status_sync_period``
    10 s, ``relist_period`` 1 s, ``max_pods`` 110, ``request_timeout`` 60 s per MetaManager
    request, ``retry_interval`` 10 s for pods held back, ``register_backoff_cap`` 7 s,
    ``host_probe`` (async; reads the machine in a thread by default), ``clock`` and ``sleep``.

    Kubelet's parts: ``pods_dir`` (where volumes are laid out; None keeps them in memory, for
    the fake runtime), ``pod_logs_dir`` (read for ``FallbackToLogsOnError``),
    ``report_event`` (send Events, default True: kubelet always does; upstream edged's
    ``reportEvent`` defaults to false), ``static_pod_path`` (None: no static pods) re-read
    every ``file_check_frequency``, ``crash_backoff_initial``/``_cap``/``_reset`` (10 s,
    300 s, 600 s), ``image_gc_high``/``_low`` percent (85/80), ``cluster_dns``,
    ``cluster_domain``.
    """

    name = EdgeModule.EDGED
    group = EdgeGroup.EDGED
    restart_policy = RestartPolicy(RestartType.ON_FAILURE)

    def __init__(
        self,
        *,
        node_name: str = "",
        runtime: Runtime | None = None,
        node_labels: Mapping[str, str] | None = None,
        kubernetes_version: str = KUBERNETES_VERSION,
        node_status_update_frequency: float = NODE_STATUS_UPDATE_FREQUENCY,
        node_status_report_frequency: float = NODE_STATUS_REPORT_FREQUENCY,
        lease_duration_seconds: int = NODE_LEASE_DURATION_SECONDS,
        lease_renew_interval: float | None = None,
        pod_status_sync_period: float = POD_STATUS_SYNC_PERIOD,
        relist_period: float = RELIST_PERIOD,
        max_pods: int = DEFAULT_MAX_PODS,
        kubelet_port: int = DEFAULT_KUBELET_PORT,
        request_timeout: float = REQUEST_TIMEOUT,
        retry_interval: float = 10.0,
        register_backoff_cap: float = 7.0,
        root_dir: str = DEFAULT_ROOT_DIR,
        pods_dir: str | None = None,
        pod_logs_dir: str | None = None,
        report_event: bool = True,
        static_pod_path: str | None = None,
        file_check_frequency: float = FILE_CHECK_FREQUENCY,
        crash_backoff_initial: float = 10.0,
        crash_backoff_cap: float = 300.0,
        crash_backoff_reset: float = 600.0,
        image_gc_high: int = 85,
        image_gc_low: int = 80,
        image_gc_period: float = IMAGE_GC_PERIOD,
        cluster_dns: tuple[str, ...] = (),
        cluster_domain: str = "cluster.local",
        host_probe: Callable[[], Awaitable[HostInfo]] | None = None,
        clock: TimeSource = time.time,
        sleep: Sleep = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        if max_pods < 1:
            raise ValueError(f"max_pods must be at least 1, got {max_pods}")
        self.node_name = node_name
        self.runtime: Runtime = runtime if runtime is not None else FakeRuntime(clock=clock)
        self.node_labels = dict(node_labels or {})
        self.kubelet_version = kubelet_version(kubernetes_version)
        self.node_status_update_frequency = node_status_update_frequency
        self.node_status_report_frequency = node_status_report_frequency
        self.lease_duration_seconds = lease_duration_seconds
        self.lease_renew_interval = (
            lease_renew_interval if lease_renew_interval is not None
            else lease_duration_seconds / 4
        )
        self.pod_status_sync_period = pod_status_sync_period
        self.relist_period = relist_period
        self.max_pods = max_pods
        self.kubelet_port = kubelet_port
        self.request_timeout = request_timeout
        self.retry_interval = retry_interval
        self.register_backoff_cap = register_backoff_cap
        # a CRI runtime lays pods out under its own directories: the same ones, by default
        runtime_pods = getattr(self.runtime, "pods_dir", None)
        runtime_logs = getattr(self.runtime, "pod_logs_dir", None)
        self.pods_dir = pods_dir or (str(runtime_pods) if runtime_pods is not None else None)
        self.pod_logs_dir = pod_logs_dir or (str(runtime_logs) if runtime_logs else None)
        self.report_event = report_event
        self.static_pod_path = static_pod_path
        self.file_check_frequency = file_check_frequency
        self.crash_backoff = (crash_backoff_initial, crash_backoff_cap, crash_backoff_reset)
        self.image_gc = (image_gc_high, image_gc_low, image_gc_period)
        self.cluster_dns = tuple(cluster_dns)
        self.cluster_domain = cluster_domain
        self._host_probe = host_probe or (lambda: asyncio.to_thread(probe_host, root_dir))
        self._clock = clock
        self._sleep = sleep
        self._jitter = jitter
        self._reset()

    def _reset(self) -> None:
        """Per-run state: a restarted module starts clean and re-adopts from the runtime."""
        self.state = EdgedState(node_name=self.node_name, runtime=self.runtime,
                                clock=self._clock, sleep=self._sleep, jitter=self._jitter,
                                retry_interval=self.retry_interval,
                                backoff_cap=self.register_backoff_cap,
                                crash_backoff_initial=self.crash_backoff[0],
                                crash_backoff_cap=self.crash_backoff[1],
                                crash_backoff_reset=self.crash_backoff[2],
                                pod_logs_dir=Path(self.pod_logs_dir) if self.pod_logs_dir
                                else None,
                                cluster_dns=self.cluster_dns,
                                cluster_domain=self.cluster_domain,
                                volumes=VolumeManager(self.pods_dir))
        self.pods = PodManager(self.state, max_pods=self.max_pods,
                               status_sync_period=self.pod_status_sync_period)
        self.pleg = PLEG(self.state, self.pods, period=self.relist_period)
        self.node_status = NodeStatus(
            self.state, host_probe=self._host_probe, kubelet_version=self.kubelet_version,
            node_labels=self.node_labels, max_pods=self.max_pods,
            kubelet_port=self.kubelet_port, update_frequency=self.node_status_update_frequency,
            report_frequency=self.node_status_report_frequency)
        self.lease = NodeLease(self.state, self.node_status,
                               duration_seconds=self.lease_duration_seconds,
                               renew_interval=self.lease_renew_interval)
        self.static_pods: StaticPods | None = None
        if self.static_pod_path:
            source = StaticPodSource(Path(self.static_pod_path), node_name=self.node_name)
            self.static_pods = StaticPods(self.state, self.pods, self.node_status, source,
                                          period=self.file_check_frequency)

    # -- what the parts know -------------------------------------------------------------------

    @property
    def workers(self) -> dict[str, PodWorker]:
        """The pod workers, by pod UID."""
        return self.pods.workers

    @property
    def pods_loaded(self) -> asyncio.Event:
        """Set once the pods stored at the edge are running (edge autonomy)."""
        return self.pods.pods_loaded

    @property
    def registered(self) -> asyncio.Event:
        """Set once the Node is registered."""
        return self.node_status.registered

    @property
    def node_uid(self) -> str:
        return self.node_status.node_uid

    @property
    def meta(self) -> MetaClient:
        return self.state.meta

    def node(self) -> dict[str, Any]:
        """The Node object Edged registers (labels, addresses, capacity, nodeInfo, conditions)."""
        return self.node_status.node()

    def apply_pod(self, pod: dict[str, Any]) -> None:
        """Start, update or stop the pod as its object says (idempotent)."""
        self.pods.apply_pod(pod)

    async def sync_node_status(self) -> bool:
        """Patch the node status now if it is due (see :meth:`NodeStatus.sync_node_status`)."""
        return await self.node_status.sync_node_status()

    async def renew_lease(self) -> bool:
        """Create or update the node Lease; True on success."""
        return await self.lease.renew()

    # -- module -------------------------------------------------------------------------------

    async def start(self, ctx: BeehiveContext) -> None:
        """Run until cancelled: registration, node status, lease, pods, and the message loop."""
        self._reset()
        state = self.state
        state.meta = MetaClient(ctx, timeout=self.request_timeout)
        state.host = await self._host_probe()
        if not self.node_name:
            self.node_name = state.node_name = state.host.hostname
        state.recorder = EventRecorder(state.meta.send, node_name=self.node_name,
                                       clock=self._clock, enabled=self.report_event)
        high, low, _period = self.image_gc
        state.images = ImageManager(self.runtime, state.recorder, clock=self._clock,
                                    backoff_initial=10.0, backoff_cap=300.0,
                                    high_threshold=high, low_threshold=low)
        if self.static_pods is not None:
            self.static_pods.source.node_name = self.node_name
        try:
            state.runtime_version = await self.runtime.version()
        except ContainerRuntimeError as exc:
            state.runtime_error = str(exc)
            log.warning("container runtime not available: %s", exc)
        guard = state.guard
        async with asyncio.TaskGroup() as task_group:
            self.pods.start(task_group)
            task_group.create_task(guard("register", self.node_status.register))
            task_group.create_task(guard("node-status", self.node_status.run))
            task_group.create_task(guard("lease", self.lease.run))
            task_group.create_task(guard("load-pods", self.pods.load_pods))
            task_group.create_task(guard("relist", self.pleg.run))
            task_group.create_task(guard("pod-status", self.pods.status_sync_loop))
            task_group.create_task(guard("events", lambda: state.recorder.run(self._sleep)))
            task_group.create_task(guard("image-gc", self._image_gc_loop))
            if self.static_pods is not None:
                task_group.create_task(guard("static-pods", self.static_pods.run))
            state.recorder.node(NORMAL, "Starting", "Starting kubelet.")
            await serve(ctx, self.name, self.handle)

    async def _image_gc_loop(self) -> None:
        """kubelet's image GC, every ``ImageGCPeriod`` (5 min)."""
        period = self.image_gc[2]
        while True:
            await self._sleep(period)
            try:
                sandboxes = await self.runtime.list_pods()
                in_use = {c.image_ref for s in sandboxes for c in s.containers} | {
                    c.image for s in sandboxes for c in s.containers}
                await self.state.images.garbage_collect(in_use)
            except ContainerRuntimeError as exc:
                log.warning("edged: image GC failed: %s", exc)

    # -- messages from MetaManager ------------------------------------------------------------

    def handle(self, msg: Message) -> None:
        """Dispatch one message; never awaits MetaManager (it may be waiting on our queue)."""
        if msg.operation in (Operation.RESPONSE, Operation.ERROR):
            log.debug("edged: late reply dropped: %s", msg)
            return
        try:
            resource = parse_edge(msg.resource)
        except DecodeError as exc:
            log.warning("edged: bad resource in %s: %s", msg, exc)
            return
        kind = resource.resource_type
        if kind == ResourceType.POD:
            self.pods.handle_pod(msg, resource.namespace, resource.name)
        elif kind in (ResourceType.CONFIGMAP, ResourceType.SECRET):
            self.pods.wake_users((kind, resource.name), resource.namespace)
        else:
            log.debug("edged: ignored %s", msg)
