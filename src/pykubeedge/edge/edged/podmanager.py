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
from pykubeedge.edge.edged import containers as kc
from pykubeedge.edge.edged import podspec
from pykubeedge.edge.edged.events import WARNING
from pykubeedge.edge.edged.kuberuntime import WorkerDeps
from pykubeedge.edge.edged.metaclient import MetaRequestError, list_items, object_resp
from pykubeedge.edge.edged.podstatus import TERMINAL_PHASES, rejected_status, status_patch
from pykubeedge.edge.edged.podworker import PodWorker, grace_seconds
from pykubeedge.edge.edged.state import EdgedState
from pykubeedge.edge.edged.timefmt import rfc3339

log = logging.getLogger(__name__)

_MAX_REJECTIONS_IN_FLIGHT: Final = 64
_REMEMBERED_REJECTIONS: Final = 1024
_MAX_HELD: Final = 1024
HOLD_UPGRADE_ANNOTATION: Final = "edge.kubeedge.io/hold-upgrade"
HELD_UPGRADE: Final = "HeldUpgrade"
HOLD_REASON: Final = "HoldUpgradeEnabled"
HOLD_MESSAGE: Final = "Upgrade is currently held due to edge-hold-upgrade annotation"
CONFIG_MIRROR: Final = "kubernetes.io/config.mirror"


class PodManager:
    """The pods of this node and their workers."""

    def __init__(self, state: EdgedState, *, max_pods: int, status_sync_period: float,
                 sync_frequency: float = 60.0) -> None:
        self.s = state
        self.max_pods = max_pods
        self.status_sync_period = status_sync_period
        self.sync_frequency = sync_frequency
        self.workers: dict[str, PodWorker] = {}
        self.pods_loaded = asyncio.Event()
        self._by_name: dict[tuple[str, str], str] = {}
        self._rejected: OrderedDict[str, None] = OrderedDict()
        self._rejecting: set[asyncio.Task[None]] = set()
        self._tasks: asyncio.TaskGroup | None = None
        self.held: OrderedDict[tuple[str, str], dict[str, Any]] = OrderedDict()
        """Pods held by ``edge.kubeedge.io/hold-upgrade`` (the newest copy of each)."""
        self.static: dict[str, dict[str, Any]] = {}
        """Static pods by UID (from the manifest directory)."""
        self._mirrors: dict[tuple[str, str], str] = {}

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
            recorder=s.recorder,
            images=s.images,
            volumes=s.volumes,
            retry_interval=s.retry_interval,
            backoff_initial=s.crash_backoff_initial,
            backoff_cap=s.crash_backoff_cap,
            backoff_reset=s.crash_backoff_reset,
            fetch_token=self._fetch_token,
            services=self._services,
            allocatable=s.allocatable,
            pod_logs_dir=s.pod_logs_dir,
            cluster_dns=s.cluster_dns,
            cluster_domain=s.cluster_domain,
        )

    def handle_pod(self, msg: Message, namespace: str, name: str) -> None:
        """A pod insert/update/delete from MetaManager (the cloud, or the store)."""
        pod = maybe_json(msg.content)
        if msg.operation == Operation.DELETE:
            self.held.pop((namespace, name), None)
            self.delete_pod(namespace, name, pod if isinstance(pod, dict) else None)
            return
        if msg.operation == Operation.UNHOLD_UPGRADE:
            self.unhold(namespace, name)
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
        if msg.operation == Operation.UPDATE and self._hold(pod):
            return
        self.apply_pod(pod)

    # -- hold upgrade (v1.23 edge feature) ----------------------------------------------------

    def _hold(self, pod: dict[str, Any]) -> bool:
        """Hold a Pending pod annotated ``edge.kubeedge.io/hold-upgrade: "true"`` (upstream
        holds only updates, and only while the pod is Pending); True if held."""
        meta = pod.get("metadata") or {}
        annotations = meta.get("annotations") if isinstance(meta.get("annotations"), dict) else {}
        status = pod.get("status") if isinstance(pod.get("status"), dict) else {}
        if (meta.get("deletionTimestamp") or (annotations or {}).get(HOLD_UPGRADE_ANNOTATION)
                != "true" or (status or {}).get("phase") != "Pending"
                or uid_of(pod) in self.workers):
            return False
        key = (namespace_of(pod), name_of(pod))
        self.held[key] = pod  # only the newest copy: replaying older ones changes nothing
        self.held.move_to_end(key)
        while len(self.held) > _MAX_HELD:
            self.held.popitem(last=False)
        log.info("edged: pod %s/%s held (hold-upgrade)", *key)
        self._spawn(self._send_held_condition(pod))
        return True

    def unhold(self, namespace: str, name: str) -> None:
        """Release a held pod (MetaServer's ``pods/unhold-upgrade``): it starts now."""
        pod = self.held.pop((namespace, name), None)
        if pod is None:
            log.info("edged: no held updates found for pod %s/%s", namespace, name)
            return
        log.info("edged: pod %s/%s released (unhold-upgrade)", namespace, name)
        self.apply_pod(pod)

    async def _send_held_condition(self, pod: dict[str, Any]) -> None:
        condition = {"type": HELD_UPGRADE, "status": "True", "lastProbeTime": None,
                     "lastTransitionTime": rfc3339(self.s.clock()), "reason": HOLD_REASON,
                     "message": HOLD_MESSAGE}
        content = orjson.dumps({"status": {"conditions": [condition]}}).decode()
        resource = build_edge(namespace_of(pod), ResourceType.POD_PATCH, name_of(pod))
        try:
            await self.s.meta.request(Operation.PATCH, resource, content)
        except MetaRequestError as exc:
            log.warning("edged: HeldUpgrade condition not sent: %s", exc)

    def _spawn(self, coro: Any) -> None:
        if self._tasks is None or len(self._rejecting) >= _MAX_REJECTIONS_IN_FLIGHT:
            coro.close()
            log.warning("edged: too many reports in flight; one dropped")
            return
        task = self._tasks.create_task(coro)
        self._rejecting.add(task)
        task.add_done_callback(self._rejecting.discard)

    # -- static pods and their mirror pods ---------------------------------------------------

    def mirror_of(self, pod: dict[str, Any]) -> bool:
        """True for a mirror pod from the cloud (it is never run: it stands for a static pod,
        whose status it gets)."""
        annotations = (pod.get("metadata") or {}).get("annotations") or {}
        mirror = annotations.get(CONFIG_MIRROR) if isinstance(annotations, dict) else None
        if not mirror:
            return False
        key = (namespace_of(pod), name_of(pod))
        if (pod.get("metadata") or {}).get("deletionTimestamp"):
            self._mirrors.pop(key, None)
            return True
        self._mirrors[key] = uid_of(pod)
        worker = self.workers.get(str(mirror))
        if worker is not None and worker.static:
            worker.status_uid = uid_of(pod)
            worker.unsynced = True
            worker.wake()
        return True

    def mirror_uid(self, namespace: str, name: str) -> str:
        """The UID of the mirror pod of static pod ``namespace/name`` ("" if none yet)."""
        return self._mirrors.get((namespace, name), "")

    def apply_static(self, pod: dict[str, Any]) -> PodWorker | None:
        """Run (or update) a static pod from the manifest directory."""
        uid = uid_of(pod)
        self.static[uid] = pod
        worker = self.workers.get(uid)
        if worker is not None:
            worker.update(pod)
            return worker
        self.apply_pod(pod)
        worker = self.workers.get(uid)
        if worker is not None:
            worker.static = True
            worker.status_uid = self._mirrors.get((namespace_of(pod), name_of(pod)), uid)
        return worker

    def remove_static(self, uid: str) -> None:
        """A static pod's file is gone: stop it (no API deletion: its mirror goes apart)."""
        pod = self.static.pop(uid, None)
        worker = self.workers.get(uid)
        if worker is not None and pod is not None:
            self._mirrors.pop((namespace_of(pod), name_of(pod)), None)
            worker.kill(grace_seconds(pod), api_deleted=True)

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
        if self.mirror_of(pod):
            return  # the cloud's mirror of a static pod we run: status goes to it
        old_uid = self._by_name.get(key)
        if old_uid is not None and old_uid in self.static and uid not in self.static:
            return  # a same-name pod from the API never replaces a static pod
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
        refusal = kc.refusal(pod)
        if refusal and not deleting:
            reason = "FailedMount" if refusal.startswith("volume ") else kc.UNSUPPORTED
            self.s.recorder.pod(pod, WARNING, reason, refusal)
            self._reject(pod, kc.UNSUPPORTED, f"Pod was rejected: {refusal}")
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
        if self._mirrors.get((namespace, name)) == uid_of(pod) and uid_of(pod):
            self._mirrors.pop((namespace, name), None)  # a mirror pod went: recreated later
            return
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

    async def _fetch_token(self, pod: Mapping[str, Any],
                           key: podspec.TokenKey) -> str | None:
        """A bound ServiceAccount token for a projected volume (the TokenRequest API, through
        MetaManager and the cloud)."""
        spec = pod.get("spec") or {}
        account = str(spec.get("serviceAccountName") or "default")
        _path, seconds, audiences = key
        request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                   "metadata": {"creationTimestamp": None},
                   "spec": {"audiences": list(audiences) or None, "expirationSeconds": seconds,
                            "boundObjectRef": {"kind": "Pod", "apiVersion": "v1",
                                               "name": name_of(pod), "uid": uid_of(pod)}},
                   "status": {"token": "", "expirationTimestamp": None}}
        resource = build_edge(namespace_of(pod), ResourceType.SERVICE_ACCOUNT_TOKEN, account)
        try:
            content = await self.s.meta.request(Operation.QUERY, resource, request)
        except MetaRequestError as exc:
            log.info("edged: token for %s not available: %s", resource, exc)
            return None
        items = list_items(content) or [object_resp(content)[0] or {}]
        status = items[0].get("status") if isinstance(items[0], dict) else None
        token = status.get("token") if isinstance(status, dict) else None
        return str(token) if token else None

    async def _services(self, namespace: str) -> list[dict[str, Any]]:
        """The Services the edge knows in ``namespace`` (and ``default/kubernetes``)."""
        found = []
        for ns in dict.fromkeys((namespace, "default")):
            content = await self.s.meta.request(Operation.QUERY,
                                                build_edge(ns, ResourceType.SERVICE))
            for svc in list_items(content):
                if ns == namespace or name_of(svc) == "kubernetes":
                    found.append(svc)
        return found

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
                if self._hold(pod):
                    continue
                self.apply_pod(pod)
                started += len(self.workers) - before
            except Exception:
                log.exception("edged: a stored pod could not be applied")
        log.info("edged: %d stored pods loaded, %d workers started", len(pods), started)
        self.pods_loaded.set()

    async def status_sync_loop(self) -> None:
        """kubelet's status manager: report again what did not go through, every period;
        and the eviction manager's emptyDir ``sizeLimit`` check (every 10 s, as kubelet's
        ``evictionMonitoringPeriod``)."""
        last_full = self.s.clock()
        while True:
            await self.s.sleep(self.status_sync_period)
            full = self.s.clock() - last_full >= self.sync_frequency
            if full:
                last_full = self.s.clock()
            for worker in list(self.workers.values()):
                if full:
                    worker.wake()  # kubelet's syncFrequency: volumes refreshed, all checked
                else:
                    worker.resync()
            await self.check_empty_dirs()

    async def check_empty_dirs(self) -> None:
        """Evict pods whose disk emptyDir uses more than its ``sizeLimit``."""
        if self.s.volumes.pods_dir is None:
            return
        for worker in list(self.workers.values()):
            for name, limit in worker.empty_dir_limits().items():
                used = await asyncio.to_thread(self.s.volumes.usage, worker.uid, name)
                if used > limit:
                    quantity = worker.size_limits_text().get(name, str(limit))
                    worker.evict(f'Usage of EmptyDir volume "{name}" exceeds the limit '
                                 f'"{quantity}". ')



def _is_newer(pod: Mapping[str, Any], current: Mapping[str, Any]) -> bool:
    """False only when both resourceVersions are numbers and ``pod``'s is older."""
    def version(obj: Mapping[str, Any]) -> int | None:
        value = resource_version_of(obj)
        return int(value) if value.isdigit() else None

    new, old = version(pod), version(current)
    return new is None or old is None or new >= old
