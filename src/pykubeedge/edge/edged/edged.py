"""Edged: the beehive module that is this node's kubelet.

It registers the Node, keeps its status and Lease fresh, runs the pods MetaManager hands it
(from the cloud, or from SQLite at start: edge autonomy) through a :class:`Runtime`, and
reports their status, always through MetaManager (``docs/edge-messages.md``)::

    hive.add_module(Edged(node_name="edge-1", runtime=FakeRuntime(),
                          node_labels={"site": "lab"}))

Time is injected (``clock``: wall seconds, ``sleep``) so tests run in fake time.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

import orjson

from pykubeedge.beehive import BeehiveContext, HiveClosedError, RestartPolicy, RestartType
from pykubeedge.core.backoff import Backoff
from pykubeedge.core.clock import Sleep, TimeSource
from pykubeedge.core.constants import (
    NULL_NAMESPACE,
    EdgeGroup,
    EdgeModule,
    Operation,
    ResourceType,
)
from pykubeedge.core.content import maybe_json
from pykubeedge.core.errors import DecodeError
from pykubeedge.core.message import Message
from pykubeedge.core.objects import name_of, namespace_of, resource_version_of, uid_of
from pykubeedge.core.resource import build_edge, parse_edge
from pykubeedge.edge.edged import podspec
from pykubeedge.edge.edged.metaclient import MetaClient, MetaRequestError, list_items, object_resp
from pykubeedge.edge.edged.node import (
    DEFAULT_KUBELET_PORT,
    DEFAULT_MAX_PODS,
    DEFAULT_ROOT_DIR,
    KUBERNETES_VERSION,
    NODE_LEASE_NAMESPACE,
    HostInfo,
    NodeConditions,
    kubelet_version,
    lease_object,
    node_labels,
    node_object,
    node_status,
    probe_host,
    refresh_conditions,
    status_without_heartbeats,
)
from pykubeedge.edge.edged.podstatus import TERMINAL_PHASES, rejected_status, status_patch
from pykubeedge.edge.edged.podworker import PodWorker, WorkerDeps, grace_seconds
from pykubeedge.edge.edged.runtime import (
    ContainerRuntimeError,
    FakeRuntime,
    PodSandboxStatus,
    Runtime,
    RuntimeVersion,
)

log = logging.getLogger(__name__)

NODE_STATUS_UPDATE_FREQUENCY: Final = 10.0
NODE_STATUS_REPORT_FREQUENCY: Final = 300.0
NODE_LEASE_DURATION_SECONDS: Final = 40
POD_STATUS_SYNC_PERIOD: Final = 10.0
RELIST_PERIOD: Final = 1.0
REQUEST_TIMEOUT: Final = 60.0
_MAX_REJECTIONS_IN_FLIGHT: Final = 64
_REMEMBERED_REJECTIONS: Final = 1024


class Edged:
    """The ``edged`` module (group ``edged``).

    Parameters (defaults as kubelet/KubeEdge): ``node_name`` (default: the host name),
    ``runtime``, ``node_labels`` (added to the built-in ones), ``kubernetes_version``,
    ``node_status_update_frequency`` 10 s, ``node_status_report_frequency`` 300 s,
    ``lease_duration_seconds`` 40 (renewed every quarter: 10 s), ``pod_status_sync_period``
    10 s, ``relist_period`` 1 s, ``max_pods`` 110, ``request_timeout`` 60 s per MetaManager
    request, ``retry_interval`` 10 s for pods held back, ``register_backoff_cap`` 7 s,
    ``host_probe`` (async; reads the machine in a thread by default), ``clock`` and ``sleep``.
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
        self._host_probe = host_probe or (lambda: asyncio.to_thread(probe_host, root_dir))
        self._clock = clock
        self._sleep = sleep
        self._jitter = jitter
        self._reset()

    def _reset(self) -> None:
        """Per-run state: a restarted module starts clean and re-adopts from the runtime."""
        self.node_uid = ""
        self.registered = asyncio.Event()
        self.pods_loaded = asyncio.Event()
        self.workers: dict[str, PodWorker] = {}
        self._by_name: dict[tuple[str, str], str] = {}
        self._rejected: OrderedDict[str, None] = OrderedDict()
        self._rejecting: set[asyncio.Task[None]] = set()
        self._conditions = NodeConditions()
        self._last_node_status: dict[str, Any] | None = None
        self._last_node_report = 0.0
        self._force_node_status = False
        self._node_status_kick = asyncio.Event()
        self._lease: dict[str, Any] | None = None
        self._lease_created = False
        self._lease_failing = False
        self._relist_seen: dict[str, tuple[Any, ...]] = {}
        self._runtime_error = ""
        self._host: HostInfo | None = None
        self._runtime_version = RuntimeVersion("unknown", "unknown")
        self._task_group: asyncio.TaskGroup | None = None
        self._meta: MetaClient | None = None

    # -- module -------------------------------------------------------------------------------

    async def start(self, ctx: BeehiveContext) -> None:
        """Run until cancelled: registration, node status, lease, pods, and the message loop."""
        self._reset()
        self._meta = MetaClient(ctx, timeout=self.request_timeout)
        self._host = await self._host_probe()
        if not self.node_name:
            self.node_name = self._host.hostname
        try:
            self._runtime_version = await self.runtime.version()
        except ContainerRuntimeError as exc:
            self._runtime_error = str(exc)
            log.warning("container runtime not available: %s", exc)
        async with asyncio.TaskGroup() as task_group:
            self._task_group = task_group
            task_group.create_task(self._guard("register", self._register))
            task_group.create_task(self._guard("node-status", self._node_status_loop))
            task_group.create_task(self._guard("lease", self._lease_loop))
            task_group.create_task(self._guard("load-pods", self._load_pods))
            task_group.create_task(self._guard("relist", self._relist_loop))
            task_group.create_task(self._guard("pod-status", self._pod_status_loop))
            while True:
                msg = await ctx.receive(self.name)
                try:
                    self.handle(msg)
                except Exception:
                    log.exception("edged: failed to handle %s", msg)

    async def _guard(self, what: str, loop: Callable[[], Any]) -> None:
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
                await self._sleep(self.retry_interval)

    @property
    def _deps(self) -> WorkerDeps:
        assert self._meta is not None
        return WorkerDeps(
            runtime=self.runtime,
            runtime_version=lambda: self._runtime_version,
            meta=self._meta,
            fetch_object=self._fetch_object,
            host_ip=self._host_ip,
            clock=self._clock,
            sleep=self._sleep,
            retry_interval=self.retry_interval,
        )

    def _host_ip(self) -> str:
        return self._host.internal_ip if self._host is not None else "127.0.0.1"

    @property
    def meta(self) -> MetaClient:
        assert self._meta is not None, "Edged is not started"
        return self._meta

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
            self._handle_pod(msg, resource.namespace, resource.name)
        elif kind in (ResourceType.CONFIGMAP, ResourceType.SECRET):
            self._wake_users((kind, resource.name), resource.namespace)
        else:
            log.debug("edged: ignored %s", msg)

    def _handle_pod(self, msg: Message, namespace: str, name: str) -> None:
        pod = maybe_json(msg.content)
        if msg.operation == Operation.DELETE:
            self._delete_pod(namespace, name, pod if isinstance(pod, dict) else None)
            return
        if msg.operation not in (Operation.INSERT, Operation.UPDATE):
            log.debug("edged: ignored %s", msg)
            return
        if not isinstance(pod, dict):
            log.warning("edged: %s carries no pod object; ignored", msg)
            return
        if isinstance(pod.get("metadata"), dict) and (
            name_of(pod) != name or namespace_of(pod) != namespace
        ):
            log.warning("edged: %s carries pod %s/%s; ignored", msg, namespace_of(pod),
                        name_of(pod))
            return
        self.apply_pod(pod)

    def apply_pod(self, pod: dict[str, Any]) -> None:
        """Start, update or stop the pod as its object says (idempotent)."""
        problem = self._invalid(pod)
        if problem:
            log.warning("edged: pod ignored: %s", problem)
            return
        metadata = pod["metadata"]
        uid, name, namespace = uid_of(pod), name_of(pod), namespace_of(pod)
        node = pod["spec"].get("nodeName")
        if node != self.node_name:
            log.warning("edged: pod %s/%s is for node %r, not %r; ignored",
                        namespace, name, node, self.node_name)
            return
        key = (namespace, name)
        old_uid = self._by_name.get(key)
        if old_uid is not None and old_uid != uid:
            old = self.workers.get(old_uid)
            if old is not None:
                log.info("edged: pod %s/%s replaced (uid %s -> %s)", namespace, name,
                         old_uid, uid)
                old.kill(grace_seconds(old.pod), api_deleted=True)
        worker = self.workers.get(uid)
        deleting = bool(metadata.get("deletionTimestamp"))
        if worker is not None:
            if not _is_newer(pod, worker.pod):
                log.debug("edged: stale copy of %r ignored", worker)
                return
            self._by_name[key] = uid
            if deleting:
                worker.update(pod)
                worker.kill(grace_seconds(pod), api_deleted=False)
            else:
                worker.update(pod)
            return
        if uid in self._rejected:
            return
        status = pod.get("status")
        phase = status.get("phase") if isinstance(status, dict) else None
        if phase in TERMINAL_PHASES and not deleting:
            log.info("edged: pod %s/%s is %s; not started", namespace, name, phase)
            return
        try:
            podspec.containers(pod)
        except podspec.PodSpecError as exc:
            log.warning("edged: pod %s/%s rejected: %s", namespace, name, exc)
            return
        if len(self.workers) >= self.max_pods:
            self._reject(pod, "OutOfpods",
                         f"Node didn't have enough resource: pods, requested: 1, "
                         f"used: {len(self.workers)}, capacity: {self.max_pods}")
            return
        worker = PodWorker(pod, self._deps)
        self.workers[uid] = worker
        self._by_name[key] = uid
        if deleting:
            worker.kill(grace_seconds(pod), api_deleted=False)
        self._spawn_worker(worker)

    def _invalid(self, pod: dict[str, Any]) -> str:
        metadata, spec = pod.get("metadata"), pod.get("spec")
        if not isinstance(metadata, dict) or not isinstance(spec, dict):
            return "no metadata or spec"
        for field in ("uid", "name"):
            value = metadata.get(field)
            if not isinstance(value, str) or not value:
                return f"metadata.{field} missing"
        namespace = metadata.get("namespace")
        if namespace is not None and not isinstance(namespace, str):
            return "metadata.namespace is not a string"
        return ""

    def _spawn_worker(self, worker: PodWorker) -> None:
        assert self._task_group is not None
        self._task_group.create_task(self._run_worker(worker), name=f"edged:{worker!r}")

    async def _run_worker(self, worker: PodWorker) -> None:
        try:
            await worker.run()
        finally:
            if self.workers.get(worker.uid) is worker:
                del self.workers[worker.uid]
            key = (worker.namespace, worker.name)
            if self._by_name.get(key) == worker.uid:
                del self._by_name[key]

    def _delete_pod(self, namespace: str, name: str, pod: dict[str, Any] | None) -> None:
        uid = uid_of(pod) or self._by_name.get((namespace, name))  # no UID given: by name
        worker = self.workers.get(uid) if uid else None
        if worker is None:
            log.info("edged: delete of unknown pod %s/%s (uid %s) ignored", namespace, name, uid)
            return
        worker.kill(grace_seconds(pod if pod is not None else worker.pod), api_deleted=True)

    def _wake_users(self, key: podspec.ObjectKey, namespace: str) -> None:
        for worker in self.workers.values():
            if worker.namespace == namespace and key in worker.refs:
                worker.wake()

    def _reject(self, pod: dict[str, Any], reason: str, message: str) -> None:
        log.warning("edged: pod %s/%s rejected: %s", namespace_of(pod), name_of(pod), message)
        self._rejected[uid_of(pod)] = None
        while len(self._rejected) > _REMEMBERED_REJECTIONS:
            self._rejected.popitem(last=False)
        if len(self._rejecting) >= _MAX_REJECTIONS_IN_FLIGHT:
            log.warning("edged: too many rejections in flight; status of %s not sent",
                        name_of(pod))
            return
        assert self._task_group is not None
        task = self._task_group.create_task(self._send_rejection(pod, reason, message))
        self._rejecting.add(task)
        task.add_done_callback(self._rejecting.discard)

    async def _send_rejection(self, pod: dict[str, Any], reason: str, message: str) -> None:
        status = rejected_status(
            reason=reason, message=message, host_ip=self._host_ip(), now=self._clock()
        )
        content = orjson.dumps(status_patch(uid_of(pod), status))
        resource = build_edge(namespace_of(pod), ResourceType.POD_PATCH, name_of(pod))
        try:
            await self.meta.request(Operation.PATCH, resource, content.decode())
        except MetaRequestError as exc:
            log.warning("edged: rejection status not sent: %s", exc)

    async def _fetch_object(self, ref: podspec.ObjectRef) -> Mapping[str, Any] | None:
        """A ConfigMap/Secret from MetaManager (local first, then the cloud); None if missing."""
        resource = build_edge(ref.namespace, ref.kind, ref.name)
        try:
            content = await self.meta.request(Operation.QUERY, resource)
        except MetaRequestError as exc:
            log.info("edged: %s not available: %s", resource, exc)
            return None
        items = list_items(content)
        if not items:
            obj, _ = object_resp(content)
            return obj
        return items[0]

    # -- edge autonomy: pods from the local store ---------------------------------------------

    async def _load_pods(self) -> None:
        """Query every stored pod and run it; retried until MetaManager answers."""
        backoff = Backoff(initial=0.5, cap=self.register_backoff_cap)
        resource = build_edge(NULL_NAMESPACE, ResourceType.POD)
        while True:
            try:
                content = await self.meta.request(Operation.QUERY, resource)
                break
            except MetaRequestError as exc:
                log.warning("edged: cannot load stored pods yet: %s", exc)
                await self._sleep(backoff.next_delay(self._jitter))
        pods = list_items(content)
        started = 0
        for pod in pods:
            try:
                before = len(self.workers)
                self.apply_pod(pod)
                started += len(self.workers) - before
            except Exception:
                log.exception("edged: a stored pod could not be applied")
        log.info("edged: %d stored pods loaded, %d workers started", len(pods), started)
        self.pods_loaded.set()

    # -- runtime relist (kubelet's PLEG) ------------------------------------------------------

    async def _relist_loop(self) -> None:
        while True:
            await self._relist()
            await self._sleep(self.relist_period)

    async def _relist(self) -> None:
        try:
            sandboxes = await self.runtime.list_pods()
        except ContainerRuntimeError as exc:
            self._runtime_error = str(exc)
            return
        by_uid: dict[str, list[PodSandboxStatus]] = {}
        for sandbox in sandboxes:
            by_uid.setdefault(sandbox.uid, []).append(sandbox)
        seen: dict[str, tuple[Any, ...]] = {}
        for uid, group in by_uid.items():
            seen[uid] = _fingerprint(group)
            worker = self.workers.get(uid)
            if worker is not None:
                if self._relist_seen.get(uid) != seen[uid]:
                    worker.wake()
            elif self.pods_loaded.is_set():
                await self._remove_orphan(uid, group)
        self._relist_seen = seen

    async def _remove_orphan(self, uid: str, sandboxes: list[PodSandboxStatus]) -> None:
        """A sandbox no pod owns (deleted while Edged was down): kubelet's pod cleanup."""
        for sandbox in sandboxes:
            log.info("edged: removing orphan sandbox %s of %s/%s (uid %s)", sandbox.id[:12],
                     sandbox.namespace, sandbox.name, uid)
            try:
                for container in sandbox.containers:
                    await self.runtime.stop_container(container.id, 0)
                await self.runtime.stop_pod_sandbox(sandbox.id)
                await self.runtime.remove_pod_sandbox(sandbox.id)
            except ContainerRuntimeError as exc:
                log.warning("edged: orphan sandbox %s not removed: %s", sandbox.id[:12], exc)

    async def _pod_status_loop(self) -> None:
        while True:
            await self._sleep(self.pod_status_sync_period)
            for worker in list(self.workers.values()):
                worker.resync()

    # -- node ---------------------------------------------------------------------------------

    def _build_status(self, runtime_error: str, now: float) -> tuple[dict[str, Any], bool]:
        assert self._host is not None
        changed = refresh_conditions(self._conditions, runtime_error=runtime_error, now=now)
        status = node_status(
            self._host,
            conditions=self._conditions.render(heartbeat=now),
            runtime_version=str(self._runtime_version),
            kubelet_version=self.kubelet_version,
            max_pods=self.max_pods,
            kubelet_port=self.kubelet_port,
        )
        return status, changed

    def node(self) -> dict[str, Any]:
        """The Node object Edged registers (labels, addresses, capacity, nodeInfo, conditions)."""
        assert self._host is not None
        status, _ = self._build_status(self._runtime_error, self._clock())
        labels = node_labels(self.node_name, self._host, self.node_labels)
        return node_object(self.node_name, labels, status)

    async def _register(self) -> None:
        """Create the Node; retried with back-off while MetaManager answers ``error``."""
        backoff = Backoff(initial=0.1, cap=self.register_backoff_cap)
        resource = build_edge(NULL_NAMESPACE, ResourceType.NODE, self.node_name)
        while True:
            node = self.node()
            try:
                content = await self.meta.request(Operation.INSERT, resource, node)
                created, err = object_resp(content)
                if err and "already exists" not in err.lower():
                    raise MetaRequestError(err)
                if created is None:
                    created = await self._query_node()
                break
            except MetaRequestError as exc:
                delay = backoff.next_delay(self._jitter)
                log.warning("edged: node %s not registered (%s); retry in %.2g s",
                            self.node_name, exc, delay)
                await self._sleep(delay)
        self.node_uid = uid_of(created)
        self._last_node_status = status_without_heartbeats(node["status"])
        self._last_node_report = self._clock()
        log.info("edged: node %s registered (uid %s)", self.node_name, self.node_uid or "?")
        self.registered.set()

    async def _query_node(self) -> dict[str, Any] | None:
        """The existing Node (re-registration after a restart), to learn its UID."""
        resource = build_edge(NULL_NAMESPACE, ResourceType.NODE, self.node_name)
        try:
            content = await self.meta.request(Operation.QUERY, resource)
        except MetaRequestError as exc:
            log.info("edged: node %s not found locally: %s", self.node_name, exc)
            return None
        items = list_items(content)
        return items[0] if items else object_resp(content)[0]

    async def _node_status_loop(self) -> None:
        await self.registered.wait()
        while True:
            await self._wait_kick(self._node_status_kick, self.node_status_update_frequency)
            await self.sync_node_status()

    async def _wait_kick(self, event: asyncio.Event, delay: float) -> None:
        if event.is_set():
            event.clear()
            return
        waiter = asyncio.ensure_future(event.wait())
        sleeper = asyncio.ensure_future(self._sleep(delay))
        try:
            await asyncio.wait({waiter, sleeper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            sleeper.cancel()
        event.clear()

    async def sync_node_status(self) -> bool:
        """Patch the node status if it changed, if the last patch failed or was only queued,
        or if ``node_status_report_frequency`` has passed; True when a patch was sent."""
        runtime_error = ""
        try:
            await self.runtime.status()
            self._runtime_version = await self.runtime.version()
        except ContainerRuntimeError as exc:
            runtime_error = str(exc)
        self._runtime_error = runtime_error
        try:
            self._host = await self._host_probe()
        except Exception:
            log.exception("edged: host probe failed; keeping the last facts")
        now = self._clock()
        status, changed = self._build_status(runtime_error, now)
        stripped = status_without_heartbeats(status)
        due = now - self._last_node_report >= self.node_status_report_frequency
        if not (changed or due or self._force_node_status or stripped != self._last_node_status):
            return False
        resource = build_edge(NULL_NAMESPACE, ResourceType.NODE_PATCH, self.node_name)
        patch = orjson.dumps({"status": status}).decode()
        try:
            content = await self.meta.request(Operation.PATCH, resource, patch)
        except MetaRequestError as exc:
            log.warning("edged: node status not reported: %s", exc)
            self._force_node_status = True
            return True
        obj, err = object_resp(content)
        if err:
            log.warning("edged: node status patch refused: %s", err)
        # A bare "OK" means MetaManager queued it offline; the lease tells us when we are back
        # (renew_lease then forces a fresh patch), so offline ticks do not fill the outbox.
        self._force_node_status = bool(err)
        if obj is not None and not self.node_uid:
            self.node_uid = uid_of(obj)
        self._last_node_status = stripped
        self._last_node_report = now
        return True

    async def _lease_loop(self) -> None:
        await self.registered.wait()
        while True:
            await self.renew_lease()
            await self._sleep(self.lease_renew_interval)

    async def renew_lease(self) -> bool:
        """Create (first) or update the node Lease; True on success."""
        resource = build_edge(NODE_LEASE_NAMESPACE, ResourceType.LEASE, self.node_name)
        for _ in range(2):  # an "already exists" insert is retried at once as an update
            operation = Operation.UPDATE if self._lease_created else Operation.INSERT
            lease = lease_object(
                self.node_name,
                duration_seconds=self.lease_duration_seconds,
                renew_time=self._clock(),
                node_uid=self.node_uid,
                base=self._lease,
            )
            try:
                content = await self.meta.request(operation, resource, lease)
                obj, err = object_resp(content)
                if err:
                    raise MetaRequestError(err)
            except MetaRequestError as exc:
                text = str(exc).lower()
                if operation == Operation.INSERT and "already exists" in text:
                    self._lease_created = True
                    continue
                if operation == Operation.UPDATE and "not found" in text:
                    self._lease_created, self._lease = False, None
                if not self._lease_failing:
                    log.warning("edged: lease not renewed: %s", exc)
                self._lease_failing = True
                return False
            self._lease_created = True
            if obj is not None:
                self._lease = obj
            if self._lease_failing:
                # Back in touch: the node may have been marked NotReady meanwhile.
                log.info("edged: lease renewed again; refreshing node status")
                self._lease_failing = False
                self._force_node_status = True
                self._node_status_kick.set()
            return True
        return False


def _is_newer(pod: Mapping[str, Any], current: Mapping[str, Any]) -> bool:
    """False only when both resourceVersions are numbers and ``pod``'s is older."""
    def version(obj: Mapping[str, Any]) -> int | None:
        value = resource_version_of(obj)
        return int(value) if value.isdigit() else None

    new, old = version(pod), version(current)
    return new is None or old is None or new >= old


def _fingerprint(sandboxes: list[PodSandboxStatus]) -> tuple[Any, ...]:
    return tuple(
        sorted(
            (s.id, s.state, tuple(sorted((c.id, c.state, c.exit_code) for c in s.containers)))
            for s in sandboxes
        )
    )
