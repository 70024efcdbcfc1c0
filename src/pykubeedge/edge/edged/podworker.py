"""One pod, one task: kubelet's pod worker and ``SyncPod``.

A worker makes the runtime match the pod spec, in kubelet's order: volumes, the sandbox, init
containers one at a time (sidecars kept running), then the regular containers; restarts with
kubelet's crash-loop back-off (10 s doubling to 5 min, reset after 10 min of running); probes
per container; ``activeDeadlineSeconds``. It reports the pod status when it changes, and on
deletion runs preStop hooks and stops the containers within the grace period (sidecars last)::

    worker = PodWorker(pod, deps)
    task_group.create_task(worker.run())
    worker.update(newer_pod)            # an update from MetaManager
    worker.kill(grace=30, api_deleted=False)   # deletionTimestamp set: stop, report, confirm
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final, TypeVar

import orjson

from pykubeedge.core.constants import Operation, ResourceType
from pykubeedge.core.objects import name_of, namespace_of, uid_of
from pykubeedge.core.resource import build_edge
from pykubeedge.edge.edged import containers as kc
from pykubeedge.edge.edged import podspec
from pykubeedge.edge.edged.events import NORMAL, WARNING
from pykubeedge.edge.edged.kuberuntime import (
    ContainerStarter,
    WorkerDeps,
    field_path,
    hosts_file,
    kill_container,
    kill_grace,
    static_env,
    termination_message,
)
from pykubeedge.edge.edged.metaclient import MetaRequestError
from pykubeedge.edge.edged.podstatus import (
    CRASH_LOOP_BACK_OFF,
    FAILED,
    TERMINAL_PHASES,
    ContainerView,
    build_status,
    pod_phase,
    restart_policy,
    should_restart,
    status_patch,
)
from pykubeedge.edge.edged.prober import ProbeWorker, Result, Target
from pykubeedge.edge.edged.runtime import (
    ContainerRuntimeError,
    ContainerState,
    ContainerStatus,
    DNSConfig,
    PodSandboxStatus,
    PortMapping,
    Resources,
    SandboxConfig,
    SandboxState,
)
from pykubeedge.edge.edged.volumemanager import VolumeError, parse_quantity

__all__ = ["PodWorker", "WorkerDeps", "grace_seconds", "parse_time"]

log = logging.getLogger(__name__)
_T = TypeVar("_T")

DEFAULT_GRACE_SECONDS: Final = 30
BACKOFF_INITIAL: Final = 10.0
BACKOFF_CAP: Final = 300.0
CONTAINER_CREATING: Final = "ContainerCreating"
POD_INITIALIZING: Final = "PodInitializing"
PROBE_KINDS: Final = (("startup", "startupProbe"), ("liveness", "livenessProbe"),
                      ("readiness", "readinessProbe"))
DEADLINE_EXCEEDED: Final = "DeadlineExceeded"
DEADLINE_MESSAGE: Final = "Pod was active on the node longer than the specified deadline"
TOKEN_REFRESH_FRACTION: Final = 0.8
ALWAYS_POLICY: Final = "Always"
EVICTED: Final = "Evicted"
IMMEDIATE_EVICTION_GRACE: Final = 1.0


@dataclass(slots=True)
class _Backoff:
    delay: float
    last_update: float


@dataclass(slots=True)
class _Probes:
    container_id: str
    workers: dict[str, ProbeWorker]
    tasks: list[asyncio.Task[None]]


def grace_seconds(pod: Mapping[str, Any]) -> float:
    """``metadata.deletionGracePeriodSeconds``, else ``spec.terminationGracePeriodSeconds``,
    else 30.

    >>> grace_seconds({"metadata": {"deletionGracePeriodSeconds": 5}, "spec": {}})
    5.0
    """
    metadata = pod.get("metadata")
    spec = pod.get("spec")
    for source, key in (
        (metadata, "deletionGracePeriodSeconds"),
        (spec, "terminationGracePeriodSeconds"),
    ):
        if isinstance(source, dict):
            value = source.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
                return float(value)
    return float(DEFAULT_GRACE_SECONDS)


def parse_time(value: Any) -> float | None:
    """Unix seconds of an RFC 3339 ``metav1.Time``; None if absent or malformed."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _newest(instances: Sequence[ContainerStatus]) -> tuple[ContainerStatus | None, ...]:
    ordered = sorted(instances, key=lambda c: (c.attempt, c.created_at))
    current = ordered[-1] if ordered else None
    previous = ordered[-2] if len(ordered) > 1 else None
    return current, previous


class PodWorker:
    """Keeps one pod (one UID) running as its spec says, and reports its status."""

    def __init__(self, pod: dict[str, Any], deps: WorkerDeps) -> None:
        self.uid: str = uid_of(pod)
        self.name: str = name_of(pod)
        self.namespace: str = namespace_of(pod)
        self.pod = pod
        self._deps = deps
        self.status_uid = self.uid
        """The UID status patches name (a static pod reports to its mirror pod)."""
        self.static = False
        self._wake = asyncio.Event()
        self._wake.set()
        self.done = False
        self.terminal = False
        self.terminating = False
        self._api_deleted = False
        self._grace = float(DEFAULT_GRACE_SECONDS)
        self._killed = False
        self._final_reported = False
        self.unsynced = False
        self.last_sent: dict[str, Any] | None = None
        self.sent_count = 0
        status = pod.get("status") if isinstance(pod.get("status"), dict) else {}
        assert isinstance(status, dict)
        conditions = status.get("conditions")
        self._conditions: list[dict[str, Any]] = (
            [c for c in conditions if isinstance(c, dict)] if isinstance(conditions, list) else []
        )
        self._start_time = parse_time(status.get("startTime"))
        self._waiting: dict[str, tuple[str, str]] = {}
        self._crash_backoff: dict[str, _Backoff] = {}
        self._reason = ("", "")
        self._probes: dict[str, _Probes] = {}
        self._ready: dict[str, bool] = {}
        self._started: dict[str, bool] = {}
        self._kill_requests: dict[str, tuple[str, str]] = {}
        self._messages: dict[str, str] = {}
        self._tokens: dict[podspec.TokenKey, tuple[str, float]] = {}
        self._files: dict[str, dict[str, bytes]] = {}
        self._eviction: str | None = None
        self._resources: dict[str, Resources] = {}
        self._tasks: asyncio.TaskGroup | None = None
        self.refs: frozenset[podspec.ObjectKey] = frozenset(
            r.key for r in podspec.referenced_objects(pod)
        )

    @property
    def resource(self) -> str:
        """``<ns>/pod/<name>``."""
        return build_edge(self.namespace, ResourceType.POD, self.name)

    def __repr__(self) -> str:
        return f"PodWorker({self.namespace}/{self.name} uid={self.uid})"

    # -- commands from Edged ------------------------------------------------------------------

    def update(self, pod: dict[str, Any]) -> None:
        """A newer version of the same pod (same UID)."""
        if self.terminating:
            return
        self.pod = pod
        self.refs = frozenset(r.key for r in podspec.referenced_objects(pod))
        self._check_cloud_status(pod)
        self.wake()

    def kill(self, grace: float, *, api_deleted: bool) -> None:
        """Stop the pod within ``grace`` seconds. ``api_deleted``: the Pod is gone from the API
        (no more status); otherwise report the final status and ask the API to delete it."""
        if self.terminating:
            self._grace = min(self._grace, grace)
            self._api_deleted = self._api_deleted or api_deleted
        else:
            self.terminating = True
            self._grace = grace
            self._api_deleted = api_deleted
        self.wake()

    def wake(self) -> None:
        """Sync again now."""
        self._wake.set()

    def resync(self) -> None:
        """The periodic status sync: report again if the last report did not go through."""
        if self.unsynced and not self.done:
            self.wake()

    def _check_cloud_status(self, pod: Mapping[str, Any]) -> None:
        """If the cloud's copy of our status disagrees with what we sent, send it again."""
        if self.last_sent is None:
            return
        status = pod.get("status")
        if not isinstance(status, dict):
            return
        if status.get("phase") != self.last_sent.get("phase") or _container_digest(
            status
        ) != _container_digest(self.last_sent):
            self.unsynced = True

    # -- the loop -----------------------------------------------------------------------------

    async def run(self) -> None:
        """Sync until the pod is gone; errors are logged and retried, never raised."""
        async with asyncio.TaskGroup() as tasks:
            self._tasks = tasks
            try:
                await self._loop()
            finally:
                self._stop_probes(keep=set())
                self._tasks = None

    async def _loop(self) -> None:
        while not self.done:
            self._wake.clear()
            delay: float | None
            try:
                delay = await self._sync()
            except asyncio.CancelledError:
                raise
            except ContainerRuntimeError as exc:
                log.warning("%r: runtime failed: %s; retrying in %g s", self, exc,
                            self._deps.retry_interval)
                delay = self._deps.retry_interval
            except Exception:
                log.exception("%r: sync failed; retrying in %g s", self, self._deps.retry_interval)
                delay = self._deps.retry_interval
            if self.done:
                return
            await self._wait(delay)

    async def _wait(self, delay: float | None) -> None:
        if self._wake.is_set():
            return
        if delay is None:
            await self._wake.wait()
            return
        waiter = asyncio.ensure_future(self._wake.wait())
        sleeper = asyncio.ensure_future(self._deps.sleep(max(delay, 0.0)))
        try:
            await asyncio.wait({waiter, sleeper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            sleeper.cancel()

    async def _disk(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """Blocking file work in a thread; inline when nothing is on disk (fake runtime)."""
        if self._deps.volumes.pods_dir is None:
            return fn(*args, **kwargs)
        return await asyncio.to_thread(fn, *args, **kwargs)

    def _event(self, kind: str, reason: str, message: str, path: str = "") -> None:
        self._deps.recorder.pod(self.pod, kind, reason, message, field_path=path)

    async def _sync(self) -> float | None:
        if self.terminating:
            return await self._sync_terminating()
        runtime = self._deps.runtime
        sandboxes = await runtime.list_pods(self.uid)
        if self.terminal:
            await self._report(sandboxes)
            return None
        if self._start_time is None:
            self._start_time = self._deps.clock()
        deadline = self._deadline_left()
        if deadline is not None and deadline <= 0:
            self._event(NORMAL, DEADLINE_EXCEEDED, DEADLINE_MESSAGE)
            await self._end(sandboxes, DEADLINE_EXCEEDED, DEADLINE_MESSAGE,
                            grace_seconds(self.pod))
            return None
        if self._eviction is not None:
            self._event(WARNING, EVICTED, self._eviction)
            await self._end(sandboxes, EVICTED, self._eviction, IMMEDIATE_EVICTION_GRACE)
            return None
        policy = restart_policy(self.pod)
        specs = podspec.containers(self.pod)
        inits = kc.init_containers(self.pod)
        instances = _instances_by_name(sandboxes)
        if self._all_done(specs, instances, policy) and self._inits_started(inits, instances):
            self.terminal = True
            await self._stop_all(sandboxes, grace=0)
            await self._report(await runtime.list_pods(self.uid))
            return None
        objects = await self._fetch_objects()
        volume_paths = await self._setup_volumes(objects, specs + inits, instances)
        if volume_paths is None:
            await self._report(sandboxes)
            return self._deps.retry_interval
        sandbox = _ready_sandbox(sandboxes)
        if sandbox is None:
            sandbox = await self._create_sandbox(sandboxes, specs + inits)
            if sandbox is None:
                await self._report(sandboxes)
                return self._deps.retry_interval
            instances = _instances_by_name(await runtime.list_pods(self.uid))
        await self._write_hosts(sandbox)
        starter = ContainerStarter(self._deps, self.pod, sandbox, await self._pull_secrets())
        services = await self._service_env()
        next_wake = await self._sync_inits(starter, sandbox, inits, instances, objects,
                                           volume_paths, services, policy)
        if next_wake is not False:
            await self._finish(sandbox)
            return _earliest_deadline(next_wake, deadline)
        wake: float | None = None
        for spec in specs:
            candidate = await self._sync_container(starter, sandbox, spec, instances, objects,
                                                   volume_paths, services, policy, init=False)
            if candidate is not None:
                wake = _earliest(wake, candidate)
        await self._finish(sandbox)
        return _earliest_deadline(wake, deadline)

    async def _end(self, sandboxes: list[PodSandboxStatus], reason: str, message: str,
                   grace: float) -> None:
        """Stop the pod for good and report it Failed with ``reason`` (the pod stays in the
        API: a deadline or an eviction is not a deletion)."""
        self._reason = (reason, message)
        self._stop_probes(keep=set())
        await self._stop_all(sandboxes, grace)
        self.terminal = True
        await self._report(await self._deps.runtime.list_pods(self.uid), force=True)

    def evict(self, message: str) -> None:
        """The eviction manager's verdict (e.g. an emptyDir over its sizeLimit)."""
        if self._eviction is None and not self.terminal and not self.terminating:
            self._eviction = message
            self.wake()

    def size_limits_text(self) -> dict[str, str]:
        """The disk-backed emptyDirs of the pod with a ``sizeLimit``, as written."""
        limits = {}
        for volume in (self.pod.get("spec") or {}).get("volumes") or []:
            source = volume.get("emptyDir") if isinstance(volume, dict) else None
            if isinstance(source, dict) and source.get("sizeLimit") and \
                    source.get("medium") != "Memory":
                limits[str(volume.get("name"))] = str(source["sizeLimit"])
        return limits

    def empty_dir_limits(self) -> dict[str, int]:
        """The disk-backed emptyDirs of the pod with a ``sizeLimit`` (bytes)."""
        return {name: parse_quantity(text) for name, text in self.size_limits_text().items()}

    async def _finish(self, sandbox: PodSandboxStatus) -> None:
        runtime = self._deps.runtime
        sandboxes = await runtime.list_pods(self.uid)
        await self._remove_stale(sandboxes, sandbox.id)
        sandboxes = await runtime.list_pods(self.uid)
        self._sync_probes(sandboxes)
        await self._report(sandboxes)

    def _deadline_left(self) -> float | None:
        value = (self.pod.get("spec") or {}).get("activeDeadlineSeconds")
        if not isinstance(value, int) or isinstance(value, bool) or self._start_time is None:
            return None
        return self._start_time + value - self._deps.clock()

    # -- init containers ----------------------------------------------------------------------

    def _inits_started(self, inits: list[dict[str, Any]],
                       instances: Mapping[str, Sequence[ContainerStatus]]) -> bool:
        return all(instances.get(str(c.get("name"))) for c in inits if not kc.is_sidecar(c))

    async def _sync_inits(self, starter: ContainerStarter, sandbox: PodSandboxStatus,
                          inits: list[dict[str, Any]],
                          instances: Mapping[str, Sequence[ContainerStatus]],
                          objects: Mapping[podspec.ObjectKey, Mapping[str, Any] | None],
                          volume_paths: Mapping[str, str], services: Mapping[str, str],
                          policy: str) -> float | bool | None:
        """Run init containers in order; ``False`` once all are done (sidecars running),
        else when to look again (None: on the next event)."""
        regular_started = any(instances.get(str(c["name"])) for c in podspec.containers(
            self.pod))
        for spec in inits:
            name = str(spec["name"])
            current, _ = _newest(instances.get(name, ()))
            if kc.is_sidecar(spec):
                wake = await self._sync_container(starter, sandbox, spec, instances, objects,
                                                  volume_paths, services, ALWAYS_POLICY,
                                                  init=True)
                fresh = _instances_by_name(await self._deps.runtime.list_pods(self.uid))
                now_current, _ = _newest(fresh.get(name, ()))
                running = now_current is not None and \
                    now_current.state is ContainerState.RUNNING
                if running and (not spec.get("startupProbe") or self._started.get(
                        now_current.id if now_current else "")):
                    continue
                if regular_started:
                    continue
                return wake
            if current is not None and current.state is ContainerState.EXITED:
                if current.exit_code == 0:
                    continue
                if policy == "Never":  # kubelet kills the pod: it will never initialize
                    await self._stop_all(await self._deps.runtime.list_pods(self.uid), 0)
                    self.terminal = True
                    return None
            elif current is not None and current.state is ContainerState.RUNNING:
                return None
            if regular_started and current is not None:
                continue  # initialized once: a new sandbox restarts only regular containers
            wake = await self._sync_container(starter, sandbox, spec, instances, objects,
                                              volume_paths, services, "OnFailure", init=True)
            return wake
        return False

    # -- one container ------------------------------------------------------------------------

    async def _sync_container(self, starter: ContainerStarter, sandbox: PodSandboxStatus,
                              spec: dict[str, Any],
                              instances: Mapping[str, Sequence[ContainerStatus]],
                              objects: Mapping[podspec.ObjectKey, Mapping[str, Any] | None],
                              volume_paths: Mapping[str, str], services: Mapping[str, str],
                              policy: str, *, init: bool) -> float | None:
        """Keep one container as its spec says; seconds until it should be looked at again."""
        runtime = self._deps.runtime
        name = str(spec["name"])
        current, _ = _newest(instances.get(name, ()))
        if current is not None and current.state is ContainerState.RUNNING and _in_sandbox(
                sandbox, current):
            kill = self._kill_requests.pop(current.id, None)
            if kill is None and current.image == spec["image"]:
                self._waiting.pop(name, None)
                await self._resize(current, spec)
                return None
            if kill is None:
                message = f"Container {name} definition changed"
                probe = None
            else:
                probe_key, message = kill
                probe = spec.get(probe_key)
            restarted = policy != "Never"
            if kill is not None and restarted:
                message += ", will be restarted"
            await kill_container(self._deps, self.pod, spec, current.id, sandbox.ip,
                                 kill_grace(self.pod, probe), init=init, message=message)
            if not restarted:
                return None
            current = await self._refreshed(current)
        elif current is not None and current.state is not ContainerState.RUNNING and \
                not should_restart(policy, current.exit_code):
            return None
        attempt = _next_attempt(instances.get(name, ()))
        if current is not None and current.state is ContainerState.EXITED:
            backoff = self._crash_wait(name, current, init=init)
            if backoff > 0:
                return backoff
        container_id, waiting = await starter.start(spec, attempt, objects, volume_paths,
                                                    init=init, services=services)
        if current is not None and current.state is ContainerState.EXITED:
            self._bump(name, current.finished_at)
        if waiting is not None:
            self._waiting[name] = waiting
            log.info("%r: container %s: %s: %s", self, name, *waiting)
            if container_id:
                return None
            left = self._deps.images.backoff_left(self.pod, str(spec["image"]))
            return left if left > 0 else self._deps.retry_interval
        self._waiting.pop(name, None)
        log.info("%r: started container %s (attempt %d) as %s", self, name, attempt,
                 container_id[:12])
        # kubelet keeps one dead instance per container (for lastState); remove older ones
        keep = {current.id} if current is not None else set()
        for old in instances.get(name, ()):
            if old.id not in keep and old.state is ContainerState.EXITED:
                await runtime.remove_container(old.id)
        return None

    async def _resize(self, current: ContainerStatus, spec: Mapping[str, Any]) -> None:
        """An in-place resize (the pod's ``resize`` subresource changed a running
        container's resources): new cgroup limits through CRI, no restart."""
        wanted = kc.container_resources(self.pod, spec,
                                        node_memory=self._deps.allocatable().get("memory", 0))
        applied = self._resources.get(current.id)
        if applied is None:
            self._resources[current.id] = wanted  # as started (or adopted)
            return
        if applied == wanted:
            return
        try:
            await self._deps.runtime.update_container_resources(current.id, wanted)
        except ContainerRuntimeError as exc:
            log.warning("%r: resize of %s failed: %s", self, current.name, exc)
            return
        self._resources[current.id] = wanted
        log.info("%r: container %s resized in place", self, current.name)

    async def _refreshed(self, status: ContainerStatus) -> ContainerStatus:
        for sandbox in await self._deps.runtime.list_pods(self.uid):
            for container in sandbox.containers:
                if container.id == status.id:
                    return container
        return status

    def _crash_wait(self, name: str, exited: ContainerStatus, *, init: bool) -> float:
        """Seconds before ``name`` may restart (kubelet's CrashLoopBackOff); 0 = now."""
        now = self._deps.clock()
        entry = self._crash_backoff.get(name)
        if entry is None or exited.finished_at - entry.last_update > self._deps.backoff_reset:
            return 0.0
        remaining = exited.finished_at + entry.delay - now
        if remaining <= 0:
            return 0.0
        label = f"{self.name}_{self.namespace}({self.uid})"
        message = (f"back-off {_go_duration(entry.delay)} restarting failed container={name} "
                   f"pod={label}")
        if self._waiting.get(name) != (CRASH_LOOP_BACK_OFF, message):
            self._event(WARNING, "BackOff",
                        f"Back-off restarting failed container {name} in pod {label}",
                        field_path({"name": name}, init=init))
        self._waiting[name] = (CRASH_LOOP_BACK_OFF, message)
        return remaining

    def _bump(self, name: str, event_time: float) -> None:
        now = self._deps.clock()
        entry = self._crash_backoff.get(name)
        if entry is None or event_time - entry.last_update > self._deps.backoff_reset:
            entry = _Backoff(self._deps.backoff_initial, now)
        else:
            entry = _Backoff(min(entry.delay * 2, self._deps.backoff_cap), now)
        self._crash_backoff[name] = entry

    # -- volumes, sandbox ---------------------------------------------------------------------

    async def _fetch_objects(self) -> dict[podspec.ObjectKey, Mapping[str, Any] | None]:
        objects: dict[podspec.ObjectKey, Mapping[str, Any] | None] = {}
        for ref in podspec.referenced_objects(self.pod):
            objects[ref.key] = await self._deps.fetch_object(ref)
        return objects

    async def _pull_secrets(self) -> list[Mapping[str, Any]]:
        names = [s.get("name") for s in (self.pod.get("spec") or {}).get("imagePullSecrets") or []
                 if isinstance(s, dict) and s.get("name")]
        found: list[Mapping[str, Any]] = []
        missing: list[str] = []
        for name in names:
            obj = await self._deps.fetch_object(podspec.ObjectRef(podspec.SECRET,
                                                                  self.namespace, str(name)))
            if obj is None:
                missing.append(str(name))
            else:
                found.append(obj)
        if missing:
            self._event(WARNING, "FailedToRetrieveImagePullSecret",
                        f"Unable to retrieve some image pull secrets ({', '.join(missing)}); "
                        "attempting to pull the image may not succeed.")
        return found

    async def _service_env(self) -> dict[str, str]:
        spec = self.pod.get("spec") or {}
        if self._deps.services is None or spec.get("enableServiceLinks") is False:
            return {}
        try:
            services = await self._deps.services(self.namespace)
        except MetaRequestError:
            return {}
        return podspec.service_env(services)

    async def _tokens_for(self) -> dict[podspec.TokenKey, str]:
        found: dict[podspec.TokenKey, str] = {}
        now = self._deps.clock()
        for _volume, key in podspec.token_sources(self.pod):
            cached = self._tokens.get(key)
            if cached is not None and now < cached[1]:
                found[key] = cached[0]
                continue
            if self._deps.fetch_token is None:
                continue
            token = await self._deps.fetch_token(self.pod, key)
            if token:
                self._tokens[key] = (token, now + key[1] * TOKEN_REFRESH_FRACTION)
                found[key] = token
            elif cached is not None:
                found[key] = cached[0]  # keep the old one until a new one comes
        return found

    async def _setup_volumes(self, objects: Mapping[podspec.ObjectKey, Mapping[str, Any] | None],
                             specs: list[dict[str, Any]],
                             instances: Mapping[str, Sequence[ContainerStatus]]
                             ) -> dict[str, str] | None:
        """Set up (or refresh) the pod's volumes; None (and FailedMount) when one fails."""
        try:
            payloads = podspec.volume_payloads(self.pod, objects, tokens=await self._tokens_for(),
                                               allocatable=self._deps.allocatable())
            if self._deps.volumes.pods_dir is None:  # kept for the fake runtime to show
                self._files = {v: {p: f.data for p, f in files.items()}
                               for v, files in payloads.items()}
            groups = kc.security_context(self.pod, {}).supplemental_groups
            fs_group = (self.pod.get("spec") or {}).get("securityContext", {}).get("fsGroup")
            return await self._disk(
                self._deps.volumes.setup, self.pod, payloads,
                memory_limit=kc.pod_memory_limit(self.pod) or self._deps.allocatable().get(
                    "memory", 0),
                gid=fs_group if isinstance(fs_group, int) and fs_group in groups else None)
        except (podspec.PodConfigError, VolumeError) as exc:
            self._event(WARNING, "FailedMount", str(exc))
            for spec in specs:
                current, _ = _newest(instances.get(str(spec["name"]), ()))
                if current is None or current.state is not ContainerState.RUNNING:
                    self._waiting[str(spec["name"])] = (CONTAINER_CREATING, "")
            log.warning("%r: %s", self, exc)
            return None

    def _dns(self) -> DNSConfig | None:
        spec = self.pod.get("spec") or {}
        policy = spec.get("dnsPolicy") or "ClusterFirst"
        custom = spec.get("dnsConfig") if isinstance(spec.get("dnsConfig"), dict) else {}
        assert isinstance(custom, dict)
        servers: list[str] = []
        searches: list[str] = []
        if policy in ("ClusterFirst", "ClusterFirstWithHostNet") and not (
                policy == "ClusterFirst" and spec.get("hostNetwork")):
            if self._deps.cluster_dns:
                domain = self._deps.cluster_domain
                servers = list(self._deps.cluster_dns)
                searches = [f"{self.namespace}.svc.{domain}", f"svc.{domain}", domain]
            else:
                message = ('kubelet does not have ClusterDNS IP configured and cannot create '
                           'Pod using "ClusterFirst" policy. Falling back to "Default" policy.')
                self._event(WARNING, "MissingClusterDNS",
                            f'pod: "{self.name}_{self.namespace}({self.uid})". {message}')
        if policy == "None" or custom:
            servers += [str(s) for s in custom.get("nameservers") or []]
            searches += [str(s) for s in custom.get("searches") or []]
            options = [f"{o.get('name')}:{o['value']}" if o.get("value") else str(o.get("name"))
                       for o in custom.get("options") or [] if isinstance(o, dict)]
            return DNSConfig(tuple(servers), tuple(searches), tuple(options))
        if servers:
            return DNSConfig(tuple(servers), tuple(searches), ("ndots:5",))
        return None

    async def _create_sandbox(self, sandboxes: list[PodSandboxStatus],
                              specs: list[dict[str, Any]]) -> PodSandboxStatus | None:
        metadata = self.pod.get("metadata", {})
        spec = self.pod.get("spec", {})
        labels = metadata.get("labels") if isinstance(metadata.get("labels"), dict) else {}
        if sandboxes:
            self._event(NORMAL, "SandboxChanged",
                        "Pod sandbox changed, it will be killed and re-created.")
        security = spec.get("securityContext") if isinstance(spec.get("securityContext"),
                                                              dict) else {}
        ports = tuple(
            PortMapping(int(p["containerPort"]), int(p["hostPort"]),
                        str(p.get("protocol") or "TCP"), str(p.get("hostIP") or ""))
            for c in specs for p in c.get("ports") or []
            if isinstance(p, dict) and p.get("hostPort") and p.get("containerPort"))
        hostname = str(spec.get("hostname") or self.name)
        if spec.get("setHostnameAsFQDN") and spec.get("subdomain"):
            hostname = (f"{hostname}.{spec['subdomain']}.{self.namespace}.svc."
                        f"{self._deps.cluster_domain}")
        config = SandboxConfig(
            uid=self.uid,
            name=self.name,
            namespace=self.namespace,
            attempt=max((s.attempt + 1 for s in sandboxes), default=0),
            host_network=bool(spec.get("hostNetwork")),
            hostname=hostname,
            labels={str(k): str(v) for k, v in (labels or {}).items()},
            volumes=self._files,
            dns=self._dns(),
            ports=ports,
            sysctls={str(s.get("name")): str(s.get("value")) for s in
                     security.get("sysctls") or [] if isinstance(s, dict)},
            share_process_namespace=bool(spec.get("shareProcessNamespace")),
            host_pid=bool(spec.get("hostPID")),
            host_ipc=bool(spec.get("hostIPC")),
            run_as_user=security.get("runAsUser") if isinstance(security.get("runAsUser"),
                                                                int) else None,
            run_as_group=security.get("runAsGroup") if isinstance(security.get("runAsGroup"),
                                                                  int) else None,
            privileged=any(bool((c.get("securityContext") or {}).get("privileged"))
                           for c in specs),
        )
        try:
            sandbox = await self._deps.runtime.run_pod_sandbox(config)
        except ContainerRuntimeError as exc:
            log.warning("%r: cannot create the pod sandbox: %s", self, exc)
            self._event(WARNING, "FailedCreatePodSandBox", f"Failed to create pod sandbox: {exc}")
            for container in specs:
                self._waiting[container["name"]] = (CONTAINER_CREATING, "")
            return None
        log.info("%r: sandbox %s, IP %s", self, sandbox.id[:12], sandbox.ip)
        return sandbox

    async def _write_hosts(self, sandbox: PodSandboxStatus) -> None:
        volumes = self._deps.volumes
        if volumes.pods_dir is None:
            return
        spec = self.pod.get("spec") or {}
        text = hosts_file(self.pod, sandbox.ip, cluster_domain=self._deps.cluster_domain,
                          host_network=bool(spec.get("hostNetwork")))
        path = volumes.pod_dir(self.uid) / "etc-hosts"

        def write() -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.is_file() or path.read_text() != text:
                path.write_text(text)
                path.chmod(0o644)

        await asyncio.to_thread(write)

    async def _remove_stale(self, sandboxes: list[PodSandboxStatus], keep: str) -> None:
        """Keep the live sandbox and the newest dead one (its containers give ``lastState``);
        remove older dead ones, so reboots do not pile sandboxes up."""
        dead = sorted(
            (s for s in sandboxes if s.id != keep and s.state is not SandboxState.READY),
            key=lambda s: (s.attempt, s.created_at),
            reverse=True,
        )
        for sandbox in dead[1:]:
            await self._deps.runtime.remove_pod_sandbox(sandbox.id)

    # -- probes -------------------------------------------------------------------------------

    def _sync_probes(self, sandboxes: list[PodSandboxStatus]) -> None:
        """One set of probe workers per running container instance (regular and sidecar)."""
        if self._tasks is None:
            return
        sandbox = _ready_sandbox(sandboxes)
        live: set[str] = set()
        specs = [(c, False) for c in podspec.containers(self.pod)] + [
            (c, True) for c in kc.init_containers(self.pod) if kc.is_sidecar(c)]
        instances = _instances_by_name(sandboxes)
        for spec, _init in specs:
            current, _ = _newest(instances.get(str(spec["name"]), ()))
            if current is None or current.state is not ContainerState.RUNNING or sandbox is None:
                continue
            live.add(current.id)
            if current.id in self._probes:
                continue
            self._start_probes(spec, current, sandbox)
        self._stop_probes(keep=live)

    def _start_probes(self, spec: dict[str, Any], current: ContainerStatus,
                      sandbox: PodSandboxStatus) -> None:
        assert self._tasks is not None
        name = str(spec["name"])
        if not spec.get("startupProbe"):
            self._started[current.id] = True
        if not spec.get("readinessProbe"):
            self._ready[current.id] = True
        workers: dict[str, ProbeWorker] = {}
        tasks: list[asyncio.Task[None]] = []
        target = Target(self._deps.runtime, current.id, sandbox.ip, spec,
                        static_env(spec))
        for kind, key in PROBE_KINDS:
            probe = spec.get(key)
            if not isinstance(probe, dict):
                continue
            worker = ProbeWorker(
                kind, probe, target,
                on_result=functools.partial(self._on_probe_result, current.id, name, key),
                on_attempt=functools.partial(self._on_probe_attempt, name),
                started_at=current.started_at, clock=self._deps.clock, sleep=self._deps.sleep,
                is_started=functools.partial(self._is_started, current.id))
            workers[kind] = worker
            tasks.append(self._tasks.create_task(worker.run(), name=f"probe:{kind}:{name}"))
        self._probes[current.id] = _Probes(current.id, workers, tasks)

    def _stop_probes(self, keep: set[str]) -> None:
        for cid in [c for c in self._probes if c not in keep]:
            for task in self._probes.pop(cid).tasks:
                task.cancel()
            self._ready.pop(cid, None)
            self._started.pop(cid, None)
            self._resources.pop(cid, None)
            self._kill_requests.pop(cid, None)

    def _is_started(self, cid: str) -> bool:
        return self._started.get(cid, False)

    def _on_probe_result(self, cid: str, name: str, key: str, kind: str, result: Result,
                         _output: str) -> None:
        # A result the pod already reflects (a readiness or liveness success every period)
        # wakes nobody: one sync per probe period per pod was most of an idle edge's CPU.
        changed = True
        if kind == "readiness":
            ready = result is Result.SUCCESS
            changed = self._ready.get(cid) != ready
            self._ready[cid] = ready
        elif kind == "startup":
            if result is Result.SUCCESS:
                changed = not self._started.get(cid)
                self._started[cid] = True
                probes = self._probes.get(cid)
                readiness = probes.workers.get("readiness") if probes else None
                if readiness is not None:
                    readiness.trigger()
            else:
                self._kill_requests[cid] = (key, f"Container {name} failed startup probe")
        elif result is Result.FAILURE:
            self._kill_requests[cid] = (key, f"Container {name} failed liveness probe")
        else:
            changed = False
        if changed:
            self.wake()

    def _on_probe_attempt(self, name: str, kind: str, result: Result, text: str) -> None:
        path = self._path_of(name)
        if result is Result.WARNING:
            self._event(WARNING, "ProbeWarning", text, path)
        else:
            self._event(WARNING, "Unhealthy", text, path)

    def _path_of(self, name: str) -> str:
        for spec in kc.init_containers(self.pod):
            if spec.get("name") == name:
                return field_path(spec, init=True)
        return f"spec.containers{{{name}}}"

    # -- stopping -----------------------------------------------------------------------------

    async def _stop_all(self, sandboxes: list[PodSandboxStatus], grace: float) -> None:
        """Stop every running container: regular ones together (each after its preStop),
        then sidecars in reverse spec order, as kubelet's termination ordering."""
        sandbox = _ready_sandbox(sandboxes)
        ip = sandbox.ip if sandbox is not None else ""
        by_id = {c.id: c for s in sandboxes for c in s.containers
                 if c.state is ContainerState.RUNNING}
        specs = {str(c.get("name")): (c, False) for c in podspec.containers(self.pod)}
        sidecars = [c for c in kc.init_containers(self.pod) if kc.is_sidecar(c)]
        for spec in kc.init_containers(self.pod):
            specs.setdefault(str(spec.get("name")), (spec, True))
        first: list[tuple[ContainerStatus, dict[str, Any], bool]] = []
        last: list[tuple[ContainerStatus, dict[str, Any], bool]] = []
        for container in by_id.values():
            spec, init = specs.get(container.name, ({"name": container.name}, False))
            item = (container, spec, init)
            (last if spec in sidecars else first).append(item)

        async def stop(item: tuple[ContainerStatus, dict[str, Any], bool], left: float) -> None:
            container, spec, init = item
            try:
                await kill_container(self._deps, self.pod, spec, container.id, ip, left,
                                     init=init)
            except ContainerRuntimeError as exc:
                log.warning("%r: container %s not stopped: %s", self, container.name, exc)

        started = self._deps.clock()
        await asyncio.gather(*(stop(i, grace) for i in first))
        order = {str(c.get("name")): i for i, c in enumerate(sidecars)}
        for item in sorted(last, key=lambda i: order.get(i[0].name, 0), reverse=True):
            # what is left of the grace period after the containers stopped before it
            await stop(item, max(grace - (self._deps.clock() - started), 0.0))
        for sandbox_status in sandboxes:
            if sandbox_status.state is SandboxState.READY:
                await self._deps.runtime.stop_pod_sandbox(sandbox_status.id)

    async def _sync_terminating(self) -> float | None:
        runtime = self._deps.runtime
        if not self._killed:
            sandboxes = await runtime.list_pods(self.uid)
            log.info("%r: stopping (grace %g s)", self, self._grace)
            self._stop_probes(keep=set())
            await self._stop_all(sandboxes, self._grace)
            self._killed = True
        sandboxes = await runtime.list_pods(self.uid)
        if not self._api_deleted:
            if not self._final_reported:
                self.terminal = True
                if not await self._report(sandboxes, force=self.unsynced):
                    return self._deps.retry_interval
                self._final_reported = True
            if not self.static and not await self._confirm_deletion():
                return self._deps.retry_interval
        for sandbox in sandboxes:
            await runtime.remove_pod_sandbox(sandbox.id)
        await self._disk(self._deps.volumes.remove, self.uid)
        self._deps.images.forget_pod(self.uid)
        self.done = True
        log.info("%r: removed", self)
        return None

    async def _confirm_deletion(self) -> bool:
        """Ask the API server to delete the Pod now that it has stopped (kubelet's status
        manager does this with grace 0 and a UID precondition)."""
        options = {"gracePeriodSeconds": 0, "preconditions": {"uid": self.status_uid}}
        try:
            await self._deps.meta.request(Operation.DELETE, self.resource, options)
        except MetaRequestError as exc:
            log.warning("%r: delete not confirmed yet: %s", self, exc)
            return False
        return True

    def _all_done(
        self,
        specs: list[dict[str, Any]],
        instances: Mapping[str, Sequence[ContainerStatus]],
        policy: str,
    ) -> bool:
        """True when no regular container runs and none will start again (Never/OnFailure;
        a static pod is never done: kubelet keeps it)."""
        if self.static and policy == "Always":
            return False
        for spec in specs:
            current, _ = _newest(instances.get(spec["name"], ()))
            if current is None or current.state is not ContainerState.EXITED:
                return False
            if should_restart(policy, current.exit_code):
                return False
        return True

    # -- status -------------------------------------------------------------------------------

    def _views(self, specs: list[dict[str, Any]],
               instances: Mapping[str, Sequence[ContainerStatus]], *, init: bool,
               terminal: bool) -> list[ContainerView]:
        views = []
        default = (POD_INITIALIZING if kc.init_containers(self.pod) else CONTAINER_CREATING, "")
        for spec in specs:
            name = str(spec["name"])
            current, previous = _newest(instances.get(name, ()))
            waiting = self._waiting.get(name)
            if terminal or (current is not None and current.state is ContainerState.RUNNING):
                waiting = None
            if waiting is None and current is None:
                waiting = default
            if current is not None and current.state is ContainerState.EXITED:
                current = replace(current, message=self._messages.get(current.id,
                                                                      current.message))
            if previous is not None and previous.state is ContainerState.EXITED:
                previous = replace(previous, message=self._messages.get(previous.id,
                                                                        previous.message))
            cid = current.id if current is not None else ""
            views.append(ContainerView(
                name, str(spec["image"]), current, previous, waiting,
                ready=self._ready.get(cid, not spec.get("readinessProbe")),
                started=self._started.get(cid, not spec.get("startupProbe")),
                sidecar=kc.is_sidecar(spec) if init else False, init=init))
        return views

    async def _termination_messages(self, sandboxes: list[PodSandboxStatus]) -> None:
        specs = {str(c.get("name")): c for c in podspec.containers(self.pod)
                 + kc.init_containers(self.pod)}
        todo = [c for s in sandboxes for c in s.containers
                if c.state is ContainerState.EXITED and c.id not in self._messages
                and c.name in specs]
        for container in todo:
            self._messages[container.id] = await self._disk(
                termination_message, self._deps, self.pod, specs[container.name], container)
        live = {c.id for s in sandboxes for c in s.containers}
        for cid in [c for c in self._messages if c not in live]:
            del self._messages[cid]

    def compute_status(self, sandboxes: list[PodSandboxStatus]) -> dict[str, Any]:
        """The pod status now, from the runtime's view and the worker's memory."""
        instances = _instances_by_name(sandboxes)
        try:
            specs = podspec.containers(self.pod)
        except podspec.PodSpecError:
            specs = []
        terminal = self.terminal or self.terminating
        views = self._views(specs, instances, init=False, terminal=terminal)
        init_views = self._views(kc.init_containers(self.pod), instances, init=True,
                                 terminal=terminal)
        phase = pod_phase(restart_policy(self.pod), views, terminal=terminal and not self.static,
                          init_views=init_views)
        reason, message = self._reason
        if reason:
            phase = FAILED
        if terminal and phase not in TERMINAL_PHASES and not self.static:
            phase = FAILED if self.terminating or self.terminal else phase
        sandbox = _ready_sandbox(sandboxes) or (
            max(sandboxes, key=lambda s: s.created_at) if sandboxes else None
        )
        now = self._deps.clock()
        return build_status(
            self.pod,
            views,
            phase=phase,
            host_ip=self._deps.host_ip(),
            pod_ip=sandbox.ip if sandbox is not None else "",
            start_time=self._start_time if self._start_time is not None else now,
            sandbox_ready=_ready_sandbox(sandboxes) is not None,
            now=now,
            runtime=self._deps.runtime_version(),
            previous_conditions=self._conditions,
            reason=reason,
            message=message,
            init_views=init_views,
            qos=kc.qos_class(self.pod),
        )

    async def _report(self, sandboxes: list[PodSandboxStatus], *, force: bool = False) -> bool:
        """Send the status if it changed (or ``force``); True when MetaManager took it."""
        if self.terminating and self._api_deleted:
            return True  # the Pod is gone from the API: nothing to report to
        await self._termination_messages(sandboxes)
        status = self.compute_status(sandboxes)
        if status == self.last_sent and not self.unsynced and not force:
            return True
        self._conditions = status["conditions"]
        patch = status_patch(self.status_uid, status)
        resource = build_edge(self.namespace, ResourceType.POD_PATCH, self.name)
        try:
            await self._deps.meta.request(
                Operation.PATCH, resource, orjson.dumps(patch).decode()
            )
        except MetaRequestError as exc:
            self.unsynced = True
            log.warning("%r: status not reported: %s", self, exc)
            return False
        self.last_sent = status
        self.unsynced = False
        self.sent_count += 1
        log.debug("%r: reported phase %s", self, status["phase"])
        return True



def _go_duration(seconds: float) -> str:
    """Go's ``time.Duration.String`` for whole seconds: ``10s``, ``1m20s``, ``5m0s``."""
    whole = int(seconds)
    if whole < 60:
        return f"{seconds:g}s"
    minutes, rest = divmod(whole, 60)
    return f"{minutes}m{rest}s"


def _instances_by_name(sandboxes: Sequence[PodSandboxStatus]) -> dict[str, list[ContainerStatus]]:
    found: dict[str, list[ContainerStatus]] = {}
    for sandbox in sandboxes:
        for container in sandbox.containers:
            found.setdefault(container.name, []).append(container)
    return found


def _ready_sandbox(sandboxes: Sequence[PodSandboxStatus]) -> PodSandboxStatus | None:
    ready = [s for s in sandboxes if s.state is SandboxState.READY]
    return max(ready, key=lambda s: (s.attempt, s.created_at)) if ready else None


def _in_sandbox(sandbox: PodSandboxStatus, container: ContainerStatus) -> bool:
    return any(c.id == container.id for c in sandbox.containers)


def _next_attempt(instances: Sequence[ContainerStatus]) -> int:
    return max((c.attempt for c in instances), default=-1) + 1


def _earliest(current: float | None, candidate: float) -> float:
    return candidate if current is None else min(current, candidate)


def _earliest_deadline(wake: float | bool | None, deadline: float | None) -> float | None:
    value = None if isinstance(wake, bool) else wake
    if deadline is not None:
        return _earliest(value, max(deadline, 0.0))
    return value


def _container_digest(status: Mapping[str, Any]) -> list[tuple[Any, Any, Any]]:
    statuses = status.get("containerStatuses")
    if not isinstance(statuses, list):
        return []
    return sorted(
        (s.get("name"), s.get("ready"), s.get("restartCount"))
        for s in statuses
        if isinstance(s, dict)
    )

