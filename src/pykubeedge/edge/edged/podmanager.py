"""Edged's pod manager and pod workers (kubelet's ``podManager`` and ``podWorkers``): which
pods this node runs, one :class:`~.podworker.PodWorker` per pod UID, admission (``max_pods``),
the pods loaded from the store at start (edge autonomy), and the periodic status resync::

    pods = PodManager(state, max_pods=110, status_sync_period=10)
    pods.start(task_group)              # workers run in the module's task group
    pods.apply_pod(pod)                 # start, update or stop it as its object says
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, Final

import orjson

from pykubeedge.core.backoff import Backoff
from pykubeedge.core.constants import NULL_NAMESPACE, Operation, ResourceType
from pykubeedge.core.content import maybe_json
from pykubeedge.core.message import Message
from pykubeedge.core.objects import name_of, namespace_of, resource_version_of, uid_of
from pykubeedge.core.resource import build_edge
from pykubeedge.edge.edged import podspec
from pykubeedge.edge.edged.metaclient import MetaRequestError, list_items, object_resp
from pykubeedge.edge.edged.podstatus import TERMINAL_PHASES, rejected_status, status_patch
from pykubeedge.edge.edged.podworker import PodWorker, WorkerDeps, grace_seconds
from pykubeedge.edge.edged.state import EdgedState

log = logging.getLogger(__name__)

_MAX_REJECTIONS_IN_FLIGHT: Final = 64
_REMEMBERED_REJECTIONS: Final = 1024


class PodManager:
    """The pods of this node and their workers."""

    def __init__(self, state: EdgedState, *, max_pods: int, status_sync_period: float) -> None:
        self.s = state
        self.max_pods = max_pods
        self.status_sync_period = status_sync_period
        self.workers: dict[str, PodWorker] = {}
        self.pods_loaded = asyncio.Event()
        self._by_name: dict[tuple[str, str], str] = {}
        self._rejected: OrderedDict[str, None] = OrderedDict()
        self._rejecting: set[asyncio.Task[None]] = set()
        self._tasks: asyncio.TaskGroup | None = None

    def start(self, tasks: asyncio.TaskGroup) -> None:
        """Run workers (and rejection reports) in ``tasks`` from now on."""
        self._tasks = tasks

    def _deps(self) -> WorkerDeps:
        s = self.s
        return WorkerDeps(
            runtime=s.runtime,
            runtime_version=lambda: s.runtime_version,
            meta=s.meta,
            fetch_object=self._fetch_object,
            host_ip=s.host_ip,
            clock=s.clock,
            sleep=s.sleep,
            retry_interval=s.retry_interval,
        )

    def handle_pod(self, msg: Message, namespace: str, name: str) -> None:
        """A pod insert/update/delete from MetaManager (the cloud, or the store)."""
        pod = maybe_json(msg.content)
        if msg.operation == Operation.DELETE:
            self.delete_pod(namespace, name, pod if isinstance(pod, dict) else None)
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
        if node != self.s.node_name:
            log.warning("edged: pod %s/%s is for node %r, not %r; ignored",
                        namespace, name, node, self.s.node_name)
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
        worker = PodWorker(pod, self._deps())
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
        assert self._tasks is not None
        self._tasks.create_task(self._run_worker(worker), name=f"edged:{worker!r}")

    async def _run_worker(self, worker: PodWorker) -> None:
        try:
            await worker.run()
        finally:
            if self.workers.get(worker.uid) is worker:
                del self.workers[worker.uid]
            key = (worker.namespace, worker.name)
            if self._by_name.get(key) == worker.uid:
                del self._by_name[key]

    def delete_pod(self, namespace: str, name: str, pod: dict[str, Any] | None) -> None:
        uid = uid_of(pod) or self._by_name.get((namespace, name))  # no UID given: by name
        worker = self.workers.get(uid) if uid else None
        if worker is None:
            log.info("edged: delete of unknown pod %s/%s (uid %s) ignored", namespace, name, uid)
            return
        worker.kill(grace_seconds(pod if pod is not None else worker.pod), api_deleted=True)

    def wake_users(self, key: podspec.ObjectKey, namespace: str) -> None:
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
        assert self._tasks is not None
        task = self._tasks.create_task(self._send_rejection(pod, reason, message))
        self._rejecting.add(task)
        task.add_done_callback(self._rejecting.discard)

    async def _send_rejection(self, pod: dict[str, Any], reason: str, message: str) -> None:
        status = rejected_status(
            reason=reason, message=message, host_ip=self.s.host_ip(), now=self.s.clock()
        )
        content = orjson.dumps(status_patch(uid_of(pod), status))
        resource = build_edge(namespace_of(pod), ResourceType.POD_PATCH, name_of(pod))
        try:
            await self.s.meta.request(Operation.PATCH, resource, content.decode())
        except MetaRequestError as exc:
            log.warning("edged: rejection status not sent: %s", exc)

    async def _fetch_object(self, ref: podspec.ObjectRef) -> Mapping[str, Any] | None:
        """A ConfigMap/Secret from MetaManager (local first, then the cloud); None if missing."""
        resource = build_edge(ref.namespace, ref.kind, ref.name)
        try:
            content = await self.s.meta.request(Operation.QUERY, resource)
        except MetaRequestError as exc:
            log.info("edged: %s not available: %s", resource, exc)
            return None
        items = list_items(content)
        if not items:
            obj, _ = object_resp(content)
            return obj
        return items[0]

    # -- edge autonomy: pods from the local store ---------------------------------------------

    async def load_pods(self) -> None:
        """Query every stored pod and run it; retried until MetaManager answers."""
        backoff = Backoff(initial=0.5, cap=self.s.backoff_cap)
        resource = build_edge(NULL_NAMESPACE, ResourceType.POD)
        while True:
            try:
                content = await self.s.meta.request(Operation.QUERY, resource)
                break
            except MetaRequestError as exc:
                log.warning("edged: cannot load stored pods yet: %s", exc)
                await self.s.sleep(backoff.next_delay(self.s.jitter))
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

    async def status_sync_loop(self) -> None:
        """kubelet's status manager: report again what did not go through, every period."""
        while True:
            await self.s.sleep(self.status_sync_period)
            for worker in list(self.workers.values()):
                worker.resync()



def _is_newer(pod: Mapping[str, Any], current: Mapping[str, Any]) -> bool:
    """False only when both resourceVersions are numbers and ``pod``'s is older."""
    def version(obj: Mapping[str, Any]) -> int | None:
        value = resource_version_of(obj)
        return int(value) if value.isdigit() else None

    new, old = version(pod), version(current)
    return new is None or old is None or new >= old
